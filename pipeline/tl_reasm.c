/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * IP fragment reassembly table.
 *
 * Layout: max_flows slots, each with a 64 KiB data buffer and a bitmap of received 8-byte
 * blocks (1 KiB). Fragment offsets are multiples of 8 and every fragment but the last
 * carries a multiple of 8 bytes, so a bitmap of 8-byte blocks records coverage exactly:
 * the only partial block is the datagram's final one, and only fragments ending at the
 * total length may touch it. Coverage checks cost a few popcounts per fragment, and an
 * overlap is compared byte for byte only where blocks were already present.
 *
 * Slots in progress are found through a chained hash index whose chains are threaded
 * through the slot array (no allocation), and sit on a doubly linked age list ordered by
 * arrival of their first fragment. With a monotonic clock that order is also deadline
 * order, so expiry pops from the head and costs O(expired). Free slots form a stack.
 *
 * The hash is seeded per table from getrandom(): an attacker who could choose colliding
 * keys would otherwise turn every lookup into a walk over all slots.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define XXH_INLINE_ALL /* header-only: no link dependency, and the hash inlines */
#include <xxhash.h>

#include "tl_reasm.h"

#define unlikely(x) __builtin_expect(!!(x), 0)

#define REASM_MAX_LEN 65535u /* largest IP payload a 16-bit length allows */
#define SLOT_BUF_SIZE 65536u /* REASM_MAX_LEN rounded to a page multiple */
#define BLOCK_SHIFT 3        /* fragment offsets count 8-byte blocks */
#define BITMAP_WORDS (SLOT_BUF_SIZE >> BLOCK_SHIFT >> 6)
#define NIL UINT32_MAX
#define PROTO_UDP 17

/* Limits, shared by the option table and tl_reasm_create(). */
#define MAX_FLOWS_MAX 65536u
#define MAX_FRAGS_MIN 2u
#define MAX_FRAGS_MAX 8192u
#define TIMEOUT_MIN_NS 1000000ull
#define TIMEOUT_MAX_NS 60000000000ull

const struct tl_opt tl_reasm_opts[] = {
        {
                .name = "max_flows",
                .type = TL_OPT_UINT,
                .def = "256",
                .offset = offsetof(struct tl_reasm_conf, max_flows),
                .min = 1,
                .max = MAX_FLOWS_MAX,
                .desc = "datagrams reassembled at once per worker (64 KiB of memory each)",
        },
        {
                .name = "max_frags",
                .type = TL_OPT_UINT,
                .def = "64",
                .offset = offsetof(struct tl_reasm_conf, max_frags),
                .min = MAX_FRAGS_MIN,
                .max = MAX_FRAGS_MAX,
                .desc = "fragments allowed per datagram (64 KiB over a 1500 MTU needs 45)",
        },
        {
                .name = "timeout",
                .type = TL_OPT_DURATION,
                .def = "2s",
                .offset = offsetof(struct tl_reasm_conf, timeout_ns),
                .min = TIMEOUT_MIN_NS,
                .max = TIMEOUT_MAX_NS,
                .desc = "an incomplete datagram is dropped this long after its first fragment",
        },
        {.name = NULL},
};

/* Fixed layout with explicit padding so the key can be hashed and compared as bytes. */
struct reasm_key {
	uint32_t id;
	uint8_t version;
	uint8_t proto;
	uint8_t pad[2];
	uint8_t src[16];
	uint8_t dst[16];
};

struct slot {
	struct reasm_key key;
	uint32_t hash;
	uint32_t hnext;    /* next slot in the hash chain; next free slot when free */
	uint32_t age_prev; /* age list neighbours */
	uint32_t age_next;
	uint64_t deadline; /* first fragment's arrival + timeout, saturated */
	uint32_t total;    /* datagram length, valid once has_last */
	uint32_t max_end;  /* highest byte received + 1 */
	uint32_t blocks;   /* 8-byte blocks received */
	uint32_t nfrags;   /* fragments stored (duplicates excluded) */
	bool has_last;
};

struct tl_reasm {
	struct tl_reasm_conf conf;
	struct slot *slots;
	uint8_t *bufs;     /* max_flows * SLOT_BUF_SIZE */
	uint64_t *bitmaps; /* max_flows * BITMAP_WORDS */
	uint32_t *buckets; /* heads of hash chains */
	uint32_t bucket_mask;
	uint32_t free_head;
	uint32_t age_head; /* oldest */
	uint32_t age_tail; /* newest */
	uint32_t in_progress;
	uint32_t pending; /* slot handed out by the last completion, or NIL */
	uint64_t seed;
};

static inline uint8_t *
slot_buf(const struct tl_reasm *r, uint32_t i)
{
	return r->bufs + (size_t)i * SLOT_BUF_SIZE;
}

static inline uint64_t *
slot_bitmap(const struct tl_reasm *r, uint32_t i)
{
	return r->bitmaps + (size_t)i * BITMAP_WORDS;
}

/* ---- bitmap of received 8-byte blocks ---- */

/* Mask of bits [lo, hi) within one word, 0 <= lo < hi <= 64. */
static inline uint64_t
word_mask(uint32_t lo, uint32_t hi)
{
	uint64_t m = hi == 64 ? ~0ull : (1ull << hi) - 1;

	return m & ~((1ull << lo) - 1);
}

static uint32_t
bitmap_count(const uint64_t *bm, uint32_t b0, uint32_t b1)
{
	uint32_t n = 0;

	while (b0 < b1) {
		uint32_t w = b0 >> 6, lo = b0 & 63;
		uint32_t hi = (b1 - (b0 - lo)) < 64 ? b1 - (b0 - lo) : 64;

		n += (uint32_t)__builtin_popcountll(bm[w] & word_mask(lo, hi));
		b0 += hi - lo;
	}
	return n;
}

static void
bitmap_set(uint64_t *bm, uint32_t b0, uint32_t b1)
{
	while (b0 < b1) {
		uint32_t w = b0 >> 6, lo = b0 & 63;
		uint32_t hi = (b1 - (b0 - lo)) < 64 ? b1 - (b0 - lo) : 64;

		bm[w] |= word_mask(lo, hi);
		b0 += hi - lo;
	}
}

static inline bool
bitmap_test(const uint64_t *bm, uint32_t b)
{
	return (bm[b >> 6] >> (b & 63)) & 1;
}

/*
 * Compare the new fragment [off, end) with the bytes already held wherever blocks are
 * present. Present blocks hold valid bytes up to their end, except the datagram's last
 * block, which holds bytes up to the total length; callers have already refused
 * fragments ending past the total, so clipping runs at @p end suffices.
 */
static bool
overlap_matches(const uint64_t *bm, const uint8_t *buf, uint32_t off, uint32_t end,
        const uint8_t *data, uint32_t nset)
{
	uint32_t b0 = off >> BLOCK_SHIFT, b1 = (end + 7) >> BLOCK_SHIFT;

	if (nset == b1 - b0)
		return memcmp(buf + off, data, end - off) == 0;
	for (uint32_t b = b0; b < b1;) {
		uint32_t e, lo, hi;

		if (!bitmap_test(bm, b)) {
			b++;
			continue;
		}
		for (e = b; e < b1 && bitmap_test(bm, e); e++)
			;
		lo = b << BLOCK_SHIFT;
		hi = (e << BLOCK_SHIFT) < end ? e << BLOCK_SHIFT : end;
		if (memcmp(buf + lo, data + (lo - off), hi - lo) != 0)
			return false;
		b = e;
	}
	return true;
}

/* ---- hash index ---- */

static inline void
make_key(const struct tl_l3_view *l3, struct reasm_key *k)
{
	size_t alen = l3->ip_version == 4 ? 4 : 16;

	memset(k, 0, sizeof(*k));
	k->id = l3->frag_id;
	k->version = l3->ip_version;
	k->proto = PROTO_UDP; /* the decoder hands over UDP fragments only */
	memcpy(k->src, l3->src, alen);
	memcpy(k->dst, l3->dst, alen);
}

static inline uint32_t
key_hash(const struct tl_reasm *r, const struct reasm_key *k)
{
	return (uint32_t)XXH3_64bits_withSeed(k, sizeof(*k), r->seed);
}

static uint32_t
lookup(const struct tl_reasm *r, const struct reasm_key *k, uint32_t h)
{
	for (uint32_t i = r->buckets[h & r->bucket_mask]; i != NIL; i = r->slots[i].hnext)
		if (r->slots[i].hash == h && memcmp(&r->slots[i].key, k, sizeof(*k)) == 0)
			return i;
	return NIL;
}

static void
hash_remove(struct tl_reasm *r, uint32_t i)
{
	uint32_t *pp = &r->buckets[r->slots[i].hash & r->bucket_mask];

	/* Chains average under one entry (buckets >= 2 * slots): walking beats a prev link. */
	while (*pp != i)
		pp = &r->slots[*pp].hnext;
	*pp = r->slots[i].hnext;
}

/* ---- slot lifecycle ---- */

static void
age_remove(struct tl_reasm *r, uint32_t i)
{
	struct slot *s = &r->slots[i];

	if (s->age_prev != NIL)
		r->slots[s->age_prev].age_next = s->age_next;
	else
		r->age_head = s->age_next;
	if (s->age_next != NIL)
		r->slots[s->age_next].age_prev = s->age_prev;
	else
		r->age_tail = s->age_prev;
}

/* Take a slot out of the index and the age list; its buffer stays readable. */
static void
slot_detach(struct tl_reasm *r, uint32_t i)
{
	hash_remove(r, i);
	age_remove(r, i);
	r->in_progress--;
}

/* Return a detached slot to the free stack. Only the bitmap words that can be dirty
 * (up to max_end) are cleared: a small datagram must not pay for a 1 KiB memset. */
static void
slot_recycle(struct tl_reasm *r, uint32_t i)
{
	struct slot *s = &r->slots[i];
	uint32_t words = (((s->max_end + 7) >> BLOCK_SHIFT) + 63) >> 6;

	memset(slot_bitmap(r, i), 0, (size_t)words * sizeof(uint64_t));
	s->hnext = r->free_head;
	r->free_head = i;
}

static void
slot_drop(struct tl_reasm *r, uint32_t i)
{
	slot_detach(r, i);
	slot_recycle(r, i);
}

static uint32_t
slot_new(struct tl_reasm *r, const struct reasm_key *k, uint32_t h, uint64_t now_ns)
{
	uint32_t i = r->free_head;
	uint32_t *bucket;
	struct slot *s;

	if (i == NIL)
		return NIL;
	s = &r->slots[i];
	r->free_head = s->hnext;

	s->key = *k;
	s->hash = h;
	s->deadline =
	        now_ns > UINT64_MAX - r->conf.timeout_ns ? UINT64_MAX : now_ns + r->conf.timeout_ns;
	s->total = 0;
	s->max_end = 0;
	s->blocks = 0;
	s->nfrags = 0;
	s->has_last = false;

	bucket = &r->buckets[h & r->bucket_mask];
	s->hnext = *bucket;
	*bucket = i;

	s->age_next = NIL;
	s->age_prev = r->age_tail;
	if (r->age_tail != NIL)
		r->slots[r->age_tail].age_next = i;
	else
		r->age_head = i;
	r->age_tail = i;
	r->in_progress++;
	return i;
}

/* The datagram handed out last time is only now no longer in use by the caller. */
static inline void
release_pending(struct tl_reasm *r)
{
	if (r->pending != NIL) {
		slot_recycle(r, r->pending);
		r->pending = NIL;
	}
}

static uint32_t
expire_until(struct tl_reasm *r, uint64_t now_ns, struct tl_reasm_drops *drops)
{
	uint32_t n = 0;

	/* Deadlines are non-decreasing along the age list as long as the clock is
	 * monotonic, so the first live slot ends the scan. */
	while (r->age_head != NIL && r->slots[r->age_head].deadline <= now_ns) {
		slot_drop(r, r->age_head);
		n++;
	}
	if (drops)
		drops->n[TL_REASON_FRAG_TIMEOUT] += n;
	return n;
}

/* ---- public API ---- */

int
tl_reasm_create(const struct tl_reasm_conf *conf, struct tl_reasm **out)
{
	struct tl_reasm *r;
	uint32_t nbuckets = 1;
	size_t buf_bytes;

	if (!conf || !out)
		return -EINVAL;
	*out = NULL;
	if (conf->max_flows < 1 || conf->max_flows > MAX_FLOWS_MAX ||
	        conf->max_frags < MAX_FRAGS_MIN || conf->max_frags > MAX_FRAGS_MAX ||
	        conf->timeout_ns < TIMEOUT_MIN_NS || conf->timeout_ns > TIMEOUT_MAX_NS)
		return -EINVAL;
	if (__builtin_mul_overflow((size_t)conf->max_flows, (size_t)SLOT_BUF_SIZE, &buf_bytes))
		return -ENOMEM;
	while (nbuckets < 2 * conf->max_flows)
		nbuckets <<= 1;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->conf = *conf;
	r->slots = calloc(conf->max_flows, sizeof(*r->slots));
	if (!r->slots)
		goto fail;
	/* Buffers are left untouched: pages are committed as datagrams first use them. */
	r->bufs = malloc(buf_bytes);
	if (!r->bufs)
		goto fail;
	r->bitmaps = calloc((size_t)conf->max_flows * BITMAP_WORDS, sizeof(uint64_t));
	if (!r->bitmaps)
		goto fail;
	r->buckets = malloc((size_t)nbuckets * sizeof(*r->buckets));
	if (!r->buckets)
		goto fail;
	memset(r->buckets, 0xff, (size_t)nbuckets * sizeof(*r->buckets)); /* all NIL */
	r->bucket_mask = nbuckets - 1;

	/* Free stack in index order so the first datagrams use the lowest slots. */
	for (uint32_t i = 0; i < conf->max_flows; i++)
		r->slots[i].hnext = i + 1 < conf->max_flows ? i + 1 : NIL;
	r->free_head = 0;
	r->age_head = NIL;
	r->age_tail = NIL;
	r->pending = NIL;

	if (getrandom(&r->seed, sizeof(r->seed), GRND_NONBLOCK) != sizeof(r->seed)) {
		/* No entropy yet (early boot): a per-process value is still not guessable
		 * from the wire, which is what matters here. */
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		r->seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uintptr_t)r ^
		          (uint64_t)ts.tv_sec;
	}
	*out = r;
	return 0;

fail:
	tl_reasm_free(r);
	return -ENOMEM;
}

void
tl_reasm_free(struct tl_reasm *r)
{
	if (!r)
		return;
	free(r->buckets);
	free(r->bitmaps);
	free(r->bufs);
	free(r->slots);
	free(r);
}

/*
 * The reason returned for a fragment is counted once by the caller, also when it drops
 * the fragment's whole datagram (OVERLAP, TOO_BIG, TOO_MANY, BAD); @p drops only
 * receives what the caller cannot see (datagrams expired on the way). @p drops may be
 * NULL.
 */
enum tl_reason
tl_reasm_add(struct tl_reasm *r, const struct tl_l3_view *l3, uint64_t now_ns,
        struct tl_reasm_drops *drops, const uint8_t **dgram, uint32_t *dgram_len)
{
	uint32_t off = l3->frag_off, len = l3->l4_len, end, b0, b1, nset, i;
	bool more = l3->more_frags != 0;
	struct reasm_key key;
	struct slot *s;
	uint64_t *bm;
	uint8_t *buf;
	uint32_t h;

	*dgram = NULL;
	*dgram_len = 0;
	release_pending(r);
	/* Expire first: a fragment that arrives after its datagram's deadline starts a new
	 * datagram instead of completing a stale one. */
	expire_until(r, now_ns, drops);

	/* Offsets count 8-byte units; non-last fragments carry whole units; offset 0
	 * without MF is a whole packet, not a fragment. */
	if (unlikely(!l3->is_fragment || (l3->ip_version != 4 && l3->ip_version != 6) ||
	             (off & 7) || (more && (len == 0 || (len & 7))) || (off == 0 && !more)))
		return TL_REASON_FRAG_BAD;

	make_key(l3, &key);
	h = key_hash(r, &key);
	i = lookup(r, &key, h);

	if (unlikely((uint64_t)off + len > REASM_MAX_LEN)) {
		if (i != NIL)
			slot_drop(r, i);
		return TL_REASON_FRAG_TOO_BIG;
	}
	end = off + len;
	b0 = off >> BLOCK_SHIFT;
	b1 = (end + 7) >> BLOCK_SHIFT;

	if (i == NIL) {
		i = slot_new(r, &key, h, now_ns);
		if (unlikely(i == NIL))
			return TL_REASON_FRAG_TABLE_FULL;
		s = &r->slots[i];
		bm = slot_bitmap(r, i);
		buf = slot_buf(r, i);
		nset = 0;
	} else {
		s = &r->slots[i];
		bm = slot_bitmap(r, i);
		buf = slot_buf(r, i);
		/* Two different ends, or data beyond the end: one of the senders lies. */
		if (unlikely(more ? s->has_last && end > s->total
		                  : (s->has_last && end != s->total) || s->max_end > end)) {
			slot_drop(r, i);
			return TL_REASON_FRAG_BAD;
		}
		nset = bitmap_count(bm, b0, b1);
		if (nset && !overlap_matches(bm, buf, off, end, l3->l4, nset)) {
			slot_drop(r, i);
			return TL_REASON_FRAG_OVERLAP;
		}
		/* Nothing new (this also catches a repeated empty last fragment), unless it
		 * is the first fragment to tell where the datagram ends. */
		if (nset == b1 - b0 && (more || s->has_last))
			return TL_REASON_FRAG_DUPLICATE;
		if (unlikely(s->nfrags >= r->conf.max_frags)) {
			slot_drop(r, i);
			return TL_REASON_FRAG_TOO_MANY;
		}
	}

	/* Overlapping bytes were just found identical, so copying them again is harmless.
	 * An empty last fragment may come with no data pointer at all. */
	if (len)
		memcpy(buf + off, l3->l4, len);
	bitmap_set(bm, b0, b1);
	s->blocks += (b1 - b0) - nset;
	s->nfrags++;
	if (end > s->max_end)
		s->max_end = end;
	if (!more) {
		s->has_last = true;
		s->total = end;
	}
	if (s->has_last && s->blocks == (s->total + 7) >> BLOCK_SHIFT) {
		slot_detach(r, i);
		r->pending = i;
		*dgram = buf;
		*dgram_len = s->total;
	}
	return TL_REASON_OK;
}

uint32_t
tl_reasm_expire(struct tl_reasm *r, uint64_t now_ns, struct tl_reasm_drops *drops)
{
	release_pending(r);
	return expire_until(r, now_ns, drops);
}

uint32_t
tl_reasm_in_progress(const struct tl_reasm *r)
{
	return r->in_progress;
}
