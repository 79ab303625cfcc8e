/* SPDX-License-Identifier: BSD-3-Clause */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <xxhash.h>

#include "tl_error.h"
#include "tl_log.h"
#include "tl_spool.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define NSEC 1000000000ull
#define MAX_PRODUCERS 1024u

/*
 * On-disk record: a 32-byte header (little-endian) followed by the payload. The header
 * sits in the producer buffer right before the payload, so one mdb_put copies both.
 */
#define REC_MAGIC 0x31534c54u /* "TLS1" */
#define REC_VERSION 1
#define REC_HDR 32u
#define FORMAT_VERSION 1u

/* Reader-requested quarantine travels through the ack queue with this bit set. */
#define QUAR_BIT (1ull << 63)
/* So do claims (tl_spool_claim): this bit, the owner in bits 56-61, the key below. */
#define CLAIM_BIT (1ull << 62)
#define CLAIM_SHIFT 56
#define KEY_MASK ((1ull << CLAIM_SHIFT) - 1)

/* Writer states, a futex word: producers wake the writer only when it sleeps. */
enum { W_RUN, W_IDLE, W_BATCH };

/* Longest the writer sleeps with nothing to do; a lost wake-up costs at most this. */
#define IDLE_SLEEP_NS (100 * 1000000ull)
/* Retry delay when the map is full at max_size under back-pressure. */
#define STALL_SLEEP_NS (10 * 1000000ull)
/* How long the writer waits for readers to leave before a resize (then retries). */
#define RESIZE_WAIT_NS (50 * 1000000ull)
/* How often the writer clears reader slots of dead processes (tools killed mid-read). */
#define READER_CHECK_NS (10 * NSEC)
/* Largest per-buffer side area for the transaction hook (tl_spool_hooks.meta_size). */
#define HOOK_META_MAX (1u << 20)
/* records, quarantine, meta, state; room for a few more without a format change. */
#define MAX_DBS 8

struct rec_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t producer;
	uint32_t len;
	uint32_t reserved;
	uint64_t created_ns;
	uint64_t xxh3;
};
_Static_assert(sizeof(struct rec_hdr) == REC_HDR, "record header is 32 bytes");

/* A buffer: the public part first so a struct tl_spool_buf * converts back. */
struct sbuf {
	struct tl_spool_buf pub;
	uint64_t put_mono;   /* tl_spool_buf_put time, for the wait histogram */
	uint64_t created_ns; /* CLOCK_REALTIME at put, stored in the header */
	uint64_t key;        /* set by the writer */
	int status;          /* set by the writer */
	uint16_t producer;
	uint8_t held;    /* 1 between get and put: catches double puts */
	uint8_t discard; /* released, not put: back to the pool unwritten */
	uint8_t force;   /* TL_SPOOL_PUT_FORCE: stored over the high-water mark */
	uint8_t more;    /* TL_SPOOL_PUT_MORE: the next record commits in the same txn */
};

/*
 * Single-producer/single-consumer ring of buffer pointers. Each side keeps a cached copy
 * of the other side's index on its own cache line, so the shared lines are touched only
 * when the cache says full/empty.
 */
struct ring {
	_Alignas(64) _Atomic uint32_t tail; /* producer side */
	uint32_t head_cache;
	_Alignas(64) _Atomic uint32_t head; /* consumer side */
	uint32_t tail_cache;
	_Alignas(64) uint32_t mask; /* read-only after init */
	struct sbuf **slot;
};

struct producer {
	struct ring to_writer; /* producer -> writer: filled buffers */
	struct ring free;      /* writer -> producer: empty buffers */
	/* written by the producer only */
	_Alignas(64) _Atomic uint64_t puts;
	_Atomic uint64_t refusals;
	_Atomic uint64_t pool_empty;
	/* written by the writer only */
	_Alignas(64) _Atomic uint64_t done;
	struct sbuf *bufs; /* buffer metadata, `buffers` of them */
	uint8_t *mem;      /* payload memory */
	uint8_t *meta_mem; /* side areas for the transaction hook, or NULL */
	uint32_t n_bufs;
	/* producer side: records put with MORE, handed over together with the run's end */
	struct sbuf **run;
	uint32_t n_run;
};

/* Writer-maintained counters: single writer, relaxed atomics so readers never tear. */
struct wstats {
	_Atomic uint64_t records, bytes, oldest_created, next_key, commits, records_committed;
	_Atomic uint64_t bytes_committed, bytes_written, max_per_commit, acked, ack_unknown;
	_Atomic uint64_t map_size, map_grows, used_bytes, hw_hits, full, dropped_newest;
	_Atomic uint64_t dropped_oldest, quarantined, quarantine_records, lost;
	_Atomic uint64_t commit_ns[TL_SPOOL_HIST], wait_ns[TL_SPOOL_HIST];
	_Atomic uint64_t per_commit[TL_SPOOL_HIST];
};

struct plan {
	bool records;      /* write the pending records (false: deletes only) */
	bool drop_all_new; /* drop every pending record (map full at max_size) */
	bool drop_force;   /* drop the FORCE records, write the others (back-pressure, map
	                      full at max_size) */
	bool bump;         /* rewrite next_key: a commit that makes freed pages reusable */
	uint64_t evict;    /* delete at least this many bytes of oldest records first */
};

struct outcome {
	uint64_t written, written_bytes, value_bytes, acked, acked_bytes, ack_unknown;
	uint64_t quarantined, quar_bytes, dropped_old, dropped_old_bytes, dropped_new;
	uint64_t force_lost; /* FORCE records refused by a map full at max_size */
	uint64_t used, oldest_created, next_key;
	int hook_err; /* the transaction hook failed with this: the writer fails */
	bool hit;
};

/* The hook's view of a write transaction; lives on the writer's stack during the hook. */
struct tl_spool_txn {
	struct tl_spool *sp;
	MDB_txn *txn;
	int err;           /* an LMDB failure of a state put: the transaction is unusable */
	bool map_full;     /* a state put found the map full: grow and retry the round */
	unsigned attempt;  /* runs of the hook for these records before this one */
	uint64_t *key;     /* the next record key of the transaction */
	struct outcome *o; /* records the hook adds are counted here */
};

struct tl_spool {
	struct tl_spool_conf conf;
	unsigned flags;
	unsigned n_prod;
	tl_spool_commit_fn on_commit;
	void *cb_arg;
	uint64_t hw_bytes;
	uint64_t psize;
	uint64_t buf_need; /* bytes one full buffer takes in the map */

	MDB_env *env;
	MDB_dbi dbi_rec, dbi_quar, dbi_meta, dbi_state, dbi_owner;
	unsigned hook_attempt; /* writer: hook runs for the pending set since its last commit */
	/* tl_spool_kick: transactions that run the hook even without records */
	_Atomic uint64_t kicks_req, kicks_done;
	uint64_t kick_seen; /* writer: the request its current round answers */
	bool has_owner;     /* false only for a read-only open of a spool made before `owner` */
	/* Some record may have an owner: deletions then also delete its claim. Set by the
	 * first claim, or at open when the owner database is not empty. */
	_Atomic bool owners;
	bool has_state; /* false only for a read-only open of a spool made before `state` */
	int lock_fd;    /* flock: one read-write opener per spool */
	/* Readers hold it shared while in a transaction; the writer takes it exclusively to
	 * resize the map, which LMDB allows only with no transaction active in the process. */
	pthread_rwlock_t map_lock;
	bool map_lock_init;

	struct producer *prod;

	/* transaction hook: set once by tl_spool_set_hooks(), published by hooks_ready */
	struct tl_spool_hooks hooks;
	const struct tl_spool_buf **hook_bufs; /* the writer's list for one transaction */
	_Atomic int hooks_claimed;
	_Atomic int hooks_ready;

	/* writer */
	pthread_t writer;
	bool writer_started;
	_Alignas(64) _Atomic uint32_t wstate;
	_Atomic int stop;
	_Atomic int error;
	_Atomic int full;
	_Atomic int flush_waiters;
	_Atomic uint64_t inflight_bytes;
	_Alignas(64) struct sbuf **pending;
	uint32_t n_pending;
	uint64_t pending_bytes;
	uint64_t pending_first; /* earliest put time among pending, monotonic */
	unsigned rr;
	uint64_t next_key;
	bool freed_last; /* the last commit deleted records */
	uint64_t *wacks;
	size_t n_wacks, cap_wacks;
	uint64_t wacks_first;

	/* ack queue (uplink threads -> writer) */
	pthread_mutex_t ack_mu;
	bool ack_mu_init;
	uint64_t *acks;
	size_t n_acks, cap_acks;
	uint64_t acks_first;
	_Atomic uint64_t acks_queued;
	_Atomic uint64_t acks_done;

	/* flush waiters */
	pthread_mutex_t done_mu;
	pthread_cond_t done_cv;
	bool done_init;

	struct wstats st;
};

const char *const tl_spool_policy_names[] = {"backpressure", "drop_newest", "drop_oldest", NULL};

/* One entry per option reads better than one field per line. */
/* clang-format off */
const struct tl_opt tl_spool_opts[] = {
	{.name = "path", .type = TL_OPT_STRING, .def = "/var/lib/tapline/spool",
		.offset = offsetof(struct tl_spool_conf, path), .size = TL_SPOOL_PATH_LEN,
		.desc = "directory of the LMDB spool (created if missing)"},
	{.name = "initial_size", .type = TL_OPT_SIZE, .def = "64MiB",
		.offset = offsetof(struct tl_spool_conf, initial_size), .min = 1 << 20,
		.max = UINT64_C(1) << 44, .desc = "first LMDB map size; grows by doubling"},
	{.name = "max_size", .type = TL_OPT_SIZE, .def = "4GiB",
		.offset = offsetof(struct tl_spool_conf, max_size), .min = 1 << 20,
		.max = UINT64_C(1) << 44, .desc = "the spool never grows beyond this"},
	{.name = "high_water_pct", .type = TL_OPT_UINT, .def = "90",
		.offset = offsetof(struct tl_spool_conf, high_water_pct), .min = 1, .max = 100,
		.desc = "full policy applies when live data reaches this % of max_size"},
	{.name = "full_policy", .type = TL_OPT_ENUM, .def = "backpressure",
		.offset = offsetof(struct tl_spool_conf, policy), .enums = tl_spool_policy_names,
		.desc = "when full: backpressure (refuse), drop_newest or drop_oldest (counted)"},
	{.name = "commit_interval", .type = TL_OPT_DURATION, .def = "2ms",
		.offset = offsetof(struct tl_spool_conf, commit_interval_ns), .min = 0,
		.max = 10 * NSEC, .desc = "longest a batch waits before its commit starts"},
	{.name = "commit_bytes", .type = TL_OPT_SIZE, .def = "8MiB",
		.offset = offsetof(struct tl_spool_conf, commit_bytes), .min = 4096,
		.max = UINT64_C(1) << 32, .desc = "commit early at this much pending; most per commit"},
	{.name = "buffer_size", .type = TL_OPT_SIZE, .def = "2MiB",
		.offset = offsetof(struct tl_spool_conf, buffer_size), .min = 1024,
		.max = 64 << 20, .desc = "largest batch: payload capacity of one producer buffer"},
	{.name = "buffers", .type = TL_OPT_UINT, .def = "8",
		.offset = offsetof(struct tl_spool_conf, buffers), .min = 2, .max = 65536,
		.desc = "preallocated buffers per producer (batches in flight)"},
	{.name = "nosync", .type = TL_OPT_BOOL, .def = "false",
		.offset = offsetof(struct tl_spool_conf, nosync),
		.desc = "no fsync at commit (tests/benchmarks only: power loss loses data)"},
	{.name = NULL},
};
/* clang-format on */

/* ---- small helpers ---- */

static uint64_t
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static uint64_t
now_real(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static uint64_t
ld(_Atomic uint64_t *a)
{
	return atomic_load_explicit(a, memory_order_relaxed);
}

/* Single-writer update: a plain load/store pair is enough and never a locked RMW. */
static void
add(_Atomic uint64_t *a, uint64_t v)
{
	atomic_store_explicit(a, ld(a) + v, memory_order_relaxed);
}

static void
set(_Atomic uint64_t *a, uint64_t v)
{
	atomic_store_explicit(a, v, memory_order_relaxed);
}

static unsigned
log2_bucket(uint64_t v)
{
	unsigned b = v ? 63u - (unsigned)__builtin_clzll(v) : 0;

	return b < TL_SPOOL_HIST ? b : TL_SPOOL_HIST - 1;
}

static uint64_t
round_up(uint64_t v, uint64_t to)
{
	return (v + to - 1) / to * to;
}

static void
key_enc(uint64_t key, uint8_t out[8])
{
	uint64_t be = htobe64(key);

	memcpy(out, &be, 8);
}

static uint64_t
key_dec(const void *p)
{
	uint64_t be;

	memcpy(&be, p, 8);
	return be64toh(be);
}

/* Translate an LMDB (or errno) result into tapline's error space. */
static int
mdb_to_err(int rc)
{
	if (rc == 0)
		return 0;
	if (rc > 0)
		return -rc;
	switch (rc) {
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_READERS_FULL:
		return -EBUSY;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		return TL_E_SPOOL_CORRUPT;
	default:
		return TL_E_SPOOL;
	}
}

static int
mdb_fail(const char *what, int rc)
{
	TL_ERR("spool: %s: %s", what, mdb_strerror(rc));
	return mdb_to_err(rc);
}

static void
futex_wait(_Atomic uint32_t *w, uint32_t val, uint64_t timeout_ns)
{
	struct timespec ts = {
	        .tv_sec = (time_t)(timeout_ns / NSEC), .tv_nsec = (long)(timeout_ns % NSEC)};

	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
}

static void
futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Wake the writer whatever it is waiting for (stop, flush, acks). */
static void
wake_writer(struct tl_spool *sp)
{
	if (atomic_exchange(&sp->wstate, W_RUN) != W_RUN)
		futex_wake(&sp->wstate);
}

/* ---- SPSC ring ---- */

static int
ring_init(struct ring *r, uint32_t n)
{
	uint32_t cap = 1;

	while (cap < n)
		cap <<= 1;
	r->slot = calloc(cap, sizeof(*r->slot));
	if (r->slot == NULL)
		return -ENOMEM;
	r->mask = cap - 1;
	return 0;
}

static bool
ring_push(struct ring *r, struct sbuf *b)
{
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);

	if (unlikely(t - r->head_cache > r->mask)) {
		r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
		if (t - r->head_cache > r->mask)
			return false;
	}
	r->slot[t & r->mask] = b;
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return true;
}

/* Push @p n buffers that become visible to the consumer at once (one tail store). The
 * caller guarantees room (the ring holds the whole pool). */
static void
ring_push_n(struct ring *r, struct sbuf *const *b, uint32_t n)
{
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);

	for (uint32_t i = 0; i < n; i++)
		r->slot[(t + i) & r->mask] = b[i];
	atomic_store_explicit(&r->tail, t + n, memory_order_release);
}

static struct sbuf *
ring_pop(struct ring *r)
{
	uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	struct sbuf *b;

	if (h == r->tail_cache) {
		r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
		if (h == r->tail_cache)
			return NULL;
	}
	b = r->slot[h & r->mask];
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
	return b;
}

/* Consumer-side emptiness check that does not consume. */
static bool
ring_empty(struct ring *r)
{
	return atomic_load_explicit(&r->head, memory_order_relaxed) ==
	       atomic_load_explicit(&r->tail, memory_order_acquire);
}

/* ---- configuration ---- */

int
tl_spool_check(const void *obj, char *msg, size_t msglen)
{
	const struct tl_spool_conf *c = obj;
	uint64_t hw;

	if (c->path[0] == '\0') {
		snprintf(msg, msglen, "path: must not be empty");
		return 1;
	}
	if (c->initial_size < (1u << 20) || c->max_size < (1u << 20)) {
		snprintf(msg, msglen, "initial_size and max_size must be at least 1MiB");
		return 1;
	}
	if (c->initial_size > c->max_size) {
		snprintf(msg, msglen, "initial_size (%llu) is larger than max_size (%llu)",
		        (unsigned long long)c->initial_size, (unsigned long long)c->max_size);
		return 1;
	}
	if (c->high_water_pct < 1 || c->high_water_pct > 100) {
		snprintf(msg, msglen, "high_water_pct: must be 1-100");
		return 1;
	}
	if (c->policy < TL_SPOOL_BACKPRESSURE || c->policy > TL_SPOOL_DROP_OLDEST) {
		snprintf(msg, msglen, "full_policy: unknown policy");
		return 1;
	}
	hw = c->max_size / 100 * c->high_water_pct;
	if (c->buffer_size < 1024 || c->buffer_size > (64u << 20) ||
	        (c->buffer_size + 4096) * 4 > hw) {
		snprintf(msg, msglen,
		        "buffer_size (%llu) must be 1KiB-64MiB and at most a quarter of the "
		        "high-water mark (%llu)",
		        (unsigned long long)c->buffer_size, (unsigned long long)hw);
		return 1;
	}
	if (c->buffers < 2 || c->buffers > 65536) {
		snprintf(msg, msglen, "buffers: must be 2-65536");
		return 1;
	}
	if (c->commit_bytes < 4096 || c->commit_interval_ns > 10 * NSEC) {
		snprintf(msg, msglen, "commit_bytes must be >= 4KiB, commit_interval <= 10s");
		return 1;
	}
	return 0;
}

/* ---- record verification ---- */

/* Pages a value of @p vlen bytes takes at most (overflow pages, or one leaf page). */
static uint64_t
value_pages(const struct tl_spool *sp, uint64_t vlen)
{
	if (vlen + 64 <= sp->psize / 2)
		return 1;
	return (vlen + 16 + sp->psize - 1) / sp->psize;
}

static int
rec_parse(const MDB_val *k, const MDB_val *v, struct tl_spool_rec *rec)
{
	struct rec_hdr h;
	const uint8_t *p = v->mv_data;

	if (k->mv_size != 8 || v->mv_size < REC_HDR)
		return -1;
	memcpy(&h, p, REC_HDR);
	if (le32toh(h.magic) != REC_MAGIC || le16toh(h.version) != REC_VERSION ||
	        le32toh(h.len) != v->mv_size - REC_HDR)
		return -1;
	if (XXH3_64bits(p + REC_HDR, v->mv_size - REC_HDR) != le64toh(h.xxh3))
		return -1;
	rec->key = key_dec(k->mv_data);
	rec->created_ns = le64toh(h.created_ns);
	rec->data = p + REC_HDR;
	rec->len = (uint32_t)(v->mv_size - REC_HDR);
	rec->producer = le16toh(h.producer);
	return 0;
}

/* Live pages: what the data occupies, not what the file once grew to. */
static uint64_t
used_bytes(struct tl_spool *sp, MDB_txn *txn)
{
	MDB_dbi dbis[5] = {sp->dbi_rec, sp->dbi_quar, sp->dbi_meta, sp->dbi_state, sp->dbi_owner};
	int n = sp->has_state ? (sp->has_owner ? 5 : 4) : 3;
	uint64_t pages = 4; /* two meta pages, the main and free-list roots */
	MDB_stat s;

	for (int i = 0; i < n; i++)
		if (mdb_stat(txn, dbis[i], &s) == 0)
			pages += s.ms_branch_pages + s.ms_leaf_pages + s.ms_overflow_pages;
	return pages * sp->psize;
}

static uint64_t
oldest_created(struct tl_spool *sp, MDB_cursor *cur)
{
	MDB_val k, v;
	struct rec_hdr h;

	if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) != 0 || v.mv_size < REC_HDR)
		return 0;
	(void)sp;
	memcpy(&h, v.mv_data, REC_HDR);
	return le64toh(h.created_ns);
}

/* ---- map size ---- */

static uint64_t
map_size_now(struct tl_spool *sp)
{
	MDB_envinfo info;

	if (mdb_env_info(sp->env, &info) != 0)
		return 0;
	return info.me_mapsize;
}

/*
 * Double the map, up to max_size. Only the writer calls this, between transactions; the
 * exclusive lock waits (bounded) for readers to leave their transactions.
 * @return 0 grown; -ENOSPC at max_size; -EAGAIN readers did not leave in time; else error.
 */
static int
grow_map(struct tl_spool *sp)
{
	uint64_t cur = map_size_now(sp), next;
	struct timespec ts;
	int rc;

	if (cur >= sp->conf.max_size)
		return -ENOSPC;
	next = cur * 2 < sp->conf.max_size ? cur * 2 : sp->conf.max_size;
	next = round_up(next, sp->psize);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)RESIZE_WAIT_NS;
	if (ts.tv_nsec >= (long)NSEC) {
		ts.tv_sec++;
		ts.tv_nsec -= (long)NSEC;
	}
	if (pthread_rwlock_clockwrlock(&sp->map_lock, CLOCK_MONOTONIC, &ts) != 0)
		return -EAGAIN;
	rc = mdb_env_set_mapsize(sp->env, (size_t)next);
	pthread_rwlock_unlock(&sp->map_lock);
	if (rc != 0)
		return mdb_fail("mdb_env_set_mapsize", rc);
	set(&sp->st.map_size, map_size_now(sp));
	add(&sp->st.map_grows, 1);
	TL_INFO("spool: map grown to %llu bytes", (unsigned long long)next);
	return 0;
}

/* ---- the writer ---- */

static void
finish_buffer(struct tl_spool *sp, struct sbuf *b, uint64_t now)
{
	struct producer *p = &sp->prod[b->producer];

	if (sp->on_commit != NULL)
		sp->on_commit(sp->cb_arg, b->producer, b->pub.user, b->key, b->status);
	if (b->status == 0)
		add(&sp->st.wait_ns[log2_bucket(now - b->put_mono)], 1);
	atomic_fetch_sub_explicit(&sp->inflight_bytes, b->pub.len, memory_order_relaxed);
	/* The free ring holds every buffer of the pool: it cannot be full. */
	ring_push(&p->free, b);
	add(&p->done, 1);
}

static void
finish_pending(struct tl_spool *sp)
{
	uint64_t now = now_mono();

	for (uint32_t i = 0; i < sp->n_pending; i++)
		finish_buffer(sp, sp->pending[i], now);
	sp->n_pending = 0;
	sp->pending_bytes = 0;
	sp->pending_first = UINT64_MAX;
}

static void
fail_pending(struct tl_spool *sp, int err)
{
	for (uint32_t i = 0; i < sp->n_pending; i++) {
		sp->pending[i]->status = err;
		sp->pending[i]->key = 0;
	}
	add(&sp->st.lost, sp->n_pending);
	finish_pending(sp);
}

static void
notify_flushers(struct tl_spool *sp)
{
	pthread_mutex_lock(&sp->done_mu);
	pthread_cond_broadcast(&sp->done_cv);
	pthread_mutex_unlock(&sp->done_mu);
}

static void
set_fatal(struct tl_spool *sp, int err)
{
	int zero = 0;

	if (atomic_compare_exchange_strong(&sp->error, &zero, err))
		TL_ERR("spool: writer failed: %s; records are no longer stored", tl_strerror(err));
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Delete the record under @p cur, counting its payload bytes. */
static int
del_current(MDB_cursor *cur, const MDB_val *v, uint64_t *bytes)
{
	*bytes += v->mv_size >= REC_HDR ? v->mv_size - REC_HDR : 0;
	return mdb_cursor_del(cur, 0);
}

/* A record is gone: so is its claim, if it had one. */
static int
del_owner(struct tl_spool *sp, MDB_txn *txn, MDB_val *k)
{
	int rc;

	if (!atomic_load_explicit(&sp->owners, memory_order_relaxed))
		return 0;
	rc = mdb_del(txn, sp->dbi_owner, k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
apply_acks(struct tl_spool *sp, MDB_txn *txn, MDB_cursor *cur, struct outcome *o)
{
	uint8_t kb[8];
	MDB_val k, v;
	int rc;

	for (size_t i = 0; i < sp->n_wacks; i++) {
		uint64_t key = sp->wacks[i] & KEY_MASK;

		key_enc(key, kb);
		k.mv_size = 8;
		k.mv_data = kb;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET);
		if (rc == MDB_NOTFOUND) {
			if (!(sp->wacks[i] & (QUAR_BIT | CLAIM_BIT)))
				o->ack_unknown++;
			continue;
		}
		if (rc != 0)
			return rc;
		if (sp->wacks[i] & CLAIM_BIT) {
			/* Only for a record still there (its ack may be in this round too). */
			uint8_t owner = (uint8_t)((sp->wacks[i] >> CLAIM_SHIFT) & 0x3f);
			MDB_val ov = {.mv_size = 1, .mv_data = &owner};

			atomic_store(&sp->owners, true);
			rc = mdb_put(txn, sp->dbi_owner, &k, &ov, 0);
			if (rc != 0)
				return rc;
			continue;
		}
		rc = del_owner(sp, txn, &k);
		if (rc != 0)
			return rc;
		if (sp->wacks[i] & QUAR_BIT) {
			rc = mdb_put(txn, sp->dbi_quar, &k, &v, 0);
			if (rc != 0)
				return rc;
			rc = del_current(cur, &v, &o->quar_bytes);
			o->quarantined++;
		} else {
			rc = del_current(cur, &v, &o->acked_bytes);
			o->acked++;
		}
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Delete the oldest record if its key is below @p limit. @return 0, MDB_NOTFOUND, error. */
static int
evict_one(struct tl_spool *sp, MDB_txn *txn, MDB_cursor *cur, uint64_t limit, struct outcome *o)
{
	MDB_val k, v;
	int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);

	if (rc != 0)
		return rc;
	if (k.mv_size == 8 && key_dec(k.mv_data) >= limit)
		return MDB_NOTFOUND;
	rc = del_owner(sp, txn, &k);
	if (rc == 0)
		rc = del_current(cur, &v, &o->dropped_old_bytes);
	if (rc == 0)
		o->dropped_old++;
	return rc;
}

/* The key the next record gets, kept so keys never repeat across restarts. */
static int
put_next_key(struct tl_spool *sp, MDB_txn *txn, uint64_t key)
{
	uint64_t le = htole64(key);
	MDB_val k = {.mv_size = 8, .mv_data = "next_key"};
	MDB_val v = {.mv_size = 8, .mv_data = &le};

	return mdb_put(txn, sp->dbi_meta, &k, &v, 0);
}

static int
put_record(struct tl_spool *sp, MDB_txn *txn, struct sbuf *b, uint64_t key)
{
	struct rec_hdr *h = (struct rec_hdr *)(b->pub.data - REC_HDR);
	uint8_t kb[8];
	MDB_val k = {.mv_size = 8, .mv_data = kb};
	MDB_val v = {.mv_size = REC_HDR + b->pub.len, .mv_data = h};

	h->magic = htole32(REC_MAGIC);
	h->version = htole16(REC_VERSION);
	h->producer = htole16(b->producer);
	h->len = htole32(b->pub.len);
	h->reserved = 0;
	h->created_ns = htole64(b->created_ns);
	h->xxh3 = htole64(XXH3_64bits(b->pub.data, b->pub.len));
	key_enc(key, kb);
	/* Keys only grow: APPEND skips the search and packs pages full. */
	return mdb_put(txn, sp->dbi_rec, &k, &v, MDB_APPEND);
}

/*
 * Let the transaction hook add its state to the transaction that holds these records.
 * A state put that found the map full makes the whole round MDB_MAP_FULL (whatever the
 * hook returned: LMDB has poisoned the transaction), so the writer grows the map and
 * retries like for a record that did not fit; the hook then runs again in the new
 * transaction. Any other failure is the hook's error and fails the writer.
 * @return 0, MDB_MAP_FULL, or -1 with o->hook_err set.
 */
static int
run_hook(struct tl_spool *sp, MDB_txn *txn, unsigned n, uint64_t *key, struct outcome *o)
{
	struct tl_spool_txn t = {
	        .sp = sp, .txn = txn, .attempt = sp->hook_attempt++, .key = key, .o = o};
	int rc = sp->hooks.on_txn(sp->hooks.arg, &t, sp->hook_bufs, n);

	if (t.map_full)
		return MDB_MAP_FULL;
	if (rc >= 0 && t.err < 0)
		rc = t.err; /* ignored a failed put: the transaction cannot commit */
	if (rc >= 0)
		return 0;
	o->hook_err = rc;
	return -1;
}

/*
 * One write transaction: acks, evictions, then the pending records (per the full
 * policy), then the transaction hook. Nothing is published unless the commit succeeds;
 * on failure the same pending set can be retried.
 */
static int
write_txn(struct tl_spool *sp, const struct plan *pl, struct outcome *o)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	uint64_t key = sp->next_key, first_key = sp->next_key;
	bool hook = atomic_load_explicit(&sp->hooks_ready, memory_order_acquire) &&
	            sp->hooks.on_txn != NULL;
	bool kicked = hook && sp->kick_seen != atomic_load(&sp->kicks_done);
	unsigned n_hook = 0;
	int rc;

	memset(o, 0, sizeof(*o));
	rc = mdb_txn_begin(sp->env, NULL, 0, &txn);
	if (rc != 0)
		return rc;
	rc = mdb_cursor_open(txn, sp->dbi_rec, &cur);
	if (rc != 0)
		goto fail;
	rc = apply_acks(sp, txn, cur, o);
	if (rc != 0)
		goto fail;
	while (o->dropped_old_bytes < pl->evict) {
		rc = evict_one(sp, txn, cur, first_key, o);
		if (rc == MDB_NOTFOUND)
			break;
		if (rc != 0)
			goto fail;
	}
	if (pl->bump) {
		/*
		 * LMDB reuses the pages a transaction freed only from the transaction after
		 * the next one: commit a one-page change so that deletes just committed make
		 * room for the retry.
		 */
		rc = put_next_key(sp, txn, key);
		if (rc != 0)
			goto fail;
	}
	if (pl->records) {
		uint64_t used = used_bytes(sp, txn);

		for (uint32_t i = 0; i < sp->n_pending; i++) {
			struct sbuf *b = sp->pending[i];
			uint64_t need = value_pages(sp, REC_HDR + b->pub.len) * sp->psize;

			b->key = 0;
			b->status = -ENOSPC;
			if (pl->drop_all_new || (pl->drop_force && b->force)) {
				/* The map is full at max_size: a FORCE record is lost, not dropped
				 * by a policy. */
				if (b->force)
					o->force_lost++;
				else
					o->dropped_new++;
				o->hit = true;
				continue;
			}
			if (sp->conf.policy != TL_SPOOL_BACKPRESSURE &&
			        used + need > sp->hw_bytes) {
				o->hit = true;
				while (sp->conf.policy == TL_SPOOL_DROP_OLDEST &&
				        used + need > sp->hw_bytes) {
					rc = evict_one(sp, txn, cur, first_key, o);
					if (rc == MDB_NOTFOUND)
						break;
					if (rc != 0)
						goto fail;
					used = used_bytes(sp, txn);
				}
				/* A FORCE record was admitted below the mark upstream: only a map
				 * full at max_size may refuse it. */
				if (used + need > sp->hw_bytes && !b->force) {
					o->dropped_new++;
					continue;
				}
			}
			rc = put_record(sp, txn, b, key);
			if (rc != 0)
				goto fail;
			if (hook)
				sp->hook_bufs[n_hook++] = &b->pub;
			b->key = key++;
			b->status = 0;
			o->written++;
			o->written_bytes += b->pub.len;
			o->value_bytes += REC_HDR + b->pub.len;
			used = used_bytes(sp, txn);
		}
		if (key != first_key) {
			rc = put_next_key(sp, txn, key);
			if (rc != 0)
				goto fail;
		}
		if (n_hook > 0 || kicked) {
			uint64_t before = key;

			rc = run_hook(sp, txn, n_hook, &key, o);
			if (rc == 0 && key != before)
				rc = put_next_key(sp, txn, key); /* the hook added records */
			if (rc != 0)
				goto fail;
		}
	}
	o->next_key = key;
	o->used = used_bytes(sp, txn);
	o->oldest_created = oldest_created(sp, cur);
	mdb_cursor_close(cur);
	return mdb_txn_commit(txn);
fail:
	if (cur != NULL)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return rc;
}

static void
update_full(struct tl_spool *sp, bool hit, uint64_t used)
{
	bool full = hit || used + sp->buf_need > sp->hw_bytes;

	if (full && !atomic_load_explicit(&sp->full, memory_order_relaxed))
		add(&sp->st.hw_hits, 1);
	atomic_store_explicit(&sp->full, full, memory_order_relaxed);
	set(&sp->st.full, full);
}

static void
publish(struct tl_spool *sp, const struct plan *pl, const struct outcome *o, uint64_t t0)
{
	uint64_t t1 = now_mono();
	MDB_stat qs;
	MDB_txn *txn;

	add(&sp->st.records, o->written);
	set(&sp->st.records, ld(&sp->st.records) - o->acked - o->quarantined - o->dropped_old);
	set(&sp->st.bytes, ld(&sp->st.bytes) + o->written_bytes - o->acked_bytes - o->quar_bytes -
	                           o->dropped_old_bytes);
	set(&sp->st.oldest_created, o->oldest_created);
	sp->next_key = o->next_key;
	sp->freed_last = o->acked + o->quarantined + o->dropped_old > 0;
	set(&sp->st.next_key, o->next_key);
	add(&sp->st.commits, 1);
	add(&sp->st.commit_ns[log2_bucket(t1 - t0)], 1);
	if (pl->records) {
		add(&sp->st.per_commit[log2_bucket(o->written)], 1);
		if (o->written > ld(&sp->st.max_per_commit))
			set(&sp->st.max_per_commit, o->written);
	}
	add(&sp->st.records_committed, o->written);
	add(&sp->st.bytes_committed, o->written_bytes);
	add(&sp->st.bytes_written, o->value_bytes);
	add(&sp->st.acked, o->acked);
	add(&sp->st.ack_unknown, o->ack_unknown);
	add(&sp->st.dropped_newest, o->dropped_new);
	add(&sp->st.dropped_oldest, o->dropped_old);
	add(&sp->st.lost, o->force_lost);
	if (o->quarantined > 0) {
		add(&sp->st.quarantined, o->quarantined);
		if (mdb_txn_begin(sp->env, NULL, MDB_RDONLY, &txn) == 0) {
			if (mdb_stat(txn, sp->dbi_quar, &qs) == 0)
				set(&sp->st.quarantine_records, qs.ms_entries);
			mdb_txn_abort(txn);
		}
	}
	set(&sp->st.used_bytes, o->used);
	set(&sp->st.map_size, map_size_now(sp));
	update_full(sp, o->hit, o->used);
	atomic_fetch_add(&sp->acks_done, sp->n_wacks);
	sp->n_wacks = 0;
	if (pl->records)
		finish_pending(sp);
}

enum { ROUND_DONE, ROUND_STALLED };

static bool
pending_force(const struct tl_spool *sp)
{
	for (uint32_t i = 0; i < sp->n_pending; i++)
		if (sp->pending[i]->force)
			return true;
	return false;
}

/* Commit the pending records and queued acks, growing the map or applying the policy. */
static int
commit_round(struct tl_spool *sp)
{
	struct plan pl = {.records = true};
	struct outcome o;
	bool tried_deletes = false, bumped = false;
	uint64_t t0;
	int rc;

	for (int attempt = 0; attempt < 16; attempt++) {
		t0 = now_mono();
		rc = write_txn(sp, &pl, &o);
		if (o.hook_err != 0) {
			/* Like a failed commit: nothing of the transaction was stored. */
			rc = o.hook_err;
			TL_ERR("spool: transaction hook failed: %s", tl_strerror(rc));
			goto fatal;
		}
		if (rc == 0) {
			publish(sp, &pl, &o, t0);
			if (pl.records) {
				sp->hook_attempt = 0;
				atomic_store(&sp->kicks_done, sp->kick_seen);
			}
			if (pl.records)
				return ROUND_DONE;
			pl = (struct plan){.records = true};
			continue;
		}
		if (rc == MDB_MAP_FULL) {
			rc = grow_map(sp);
			if (rc == 0)
				continue;
			if (rc == -EAGAIN)
				return ROUND_STALLED;
			if (rc != -ENOSPC)
				goto fatal;
		} else if (rc != ENOSPC) {
			rc = mdb_fail("commit", rc);
			goto fatal;
		}
		/*
		 * Full at max_size (or the file system is full). Deletes first, in their own
		 * transaction: pages they free are reusable only after it commits.
		 */
		if (!tried_deletes && pl.records &&
		        (sp->n_wacks > 0 || sp->conf.policy == TL_SPOOL_DROP_OLDEST)) {
			tried_deletes = true;
			pl = (struct plan){.records = false,
			        .evict = sp->conf.policy == TL_SPOOL_DROP_OLDEST
			                         ? sp->pending_bytes + sp->buf_need
			                         : 0};
			continue;
		}
		/* Pages the last commit freed are not reusable yet: one more commit first. */
		if (!bumped && pl.records && sp->freed_last) {
			bumped = true;
			pl = (struct plan){.records = false, .bump = true};
			continue;
		}
		if (sp->conf.policy != TL_SPOOL_BACKPRESSURE && !pl.drop_all_new) {
			pl = (struct plan){.records = true, .drop_all_new = true};
			continue;
		}
		/*
		 * Back-pressure: records put below the mark wait for room, but a FORCE record
		 * that does not fit at max_size gets its answer (-ENOSPC, lost) now.
		 */
		if (sp->conf.policy == TL_SPOOL_BACKPRESSURE && !pl.drop_force &&
		        pending_force(sp)) {
			pl = (struct plan){.records = true, .drop_force = true};
			continue;
		}
		break;
	}
	/* Back-pressure: keep everything pending, refuse producers, retry later. */
	update_full(sp, true, ld(&sp->st.used_bytes));
	return ROUND_STALLED;
fatal:
	set_fatal(sp, rc);
	fail_pending(sp, rc);
	atomic_fetch_add(&sp->acks_done, sp->n_wacks);
	sp->n_wacks = 0;
	return ROUND_DONE;
}

/* Move filled buffers from the producer rings to the pending set, and take the acks. */
static void
drain(struct tl_spool *sp)
{
	unsigned n = sp->n_prod;

	for (unsigned i = 0; i < n && sp->pending_bytes < sp->conf.commit_bytes; i++) {
		struct producer *p = &sp->prod[(sp->rr + i) % n];
		struct sbuf *b;

		bool more = false;

		/* A run of MORE records was handed over at once: take all of it. */
		while ((more || sp->pending_bytes < sp->conf.commit_bytes) &&
		        (b = ring_pop(&p->to_writer)) != NULL) {
			more = b->more;
			if (b->discard) {
				b->discard = 0;
				ring_push(&p->free, b);
				add(&p->done, 1);
				continue;
			}
			sp->pending[sp->n_pending++] = b;
			sp->pending_bytes += b->pub.len;
			if (b->put_mono < sp->pending_first)
				sp->pending_first = b->put_mono;
		}
	}
	sp->rr = n ? (sp->rr + 1) % n : 0;
	if (sp->n_wacks == 0 && atomic_load(&sp->acks_queued) != atomic_load(&sp->acks_done)) {
		uint64_t *t;
		size_t c;

		pthread_mutex_lock(&sp->ack_mu);
		t = sp->wacks;
		c = sp->cap_wacks;
		sp->wacks = sp->acks;
		sp->cap_wacks = sp->cap_acks;
		sp->n_wacks = sp->n_acks;
		sp->wacks_first = sp->acks_first;
		sp->acks = t;
		sp->cap_acks = c;
		sp->n_acks = 0;
		pthread_mutex_unlock(&sp->ack_mu);
		/* Sorted keys delete along the tree instead of jumping around it. */
		qsort(sp->wacks, sp->n_wacks, sizeof(*sp->wacks), cmp_u64);
	}
}

/*
 * A producer with half of its pool waiting for a commit would soon run dry: waiting out
 * commit_interval then only adds latency, as no more can arrive from it.
 */
static bool
pool_pressure(struct tl_spool *sp)
{
	for (unsigned i = 0; i < sp->n_prod; i++) {
		struct producer *p = &sp->prod[i];

		if ((ld(&p->puts) - ld(&p->done)) * 2 >= p->n_bufs)
			return true;
	}
	return false;
}

static bool
work_waiting(struct tl_spool *sp, uint32_t state)
{
	if (atomic_load(&sp->stop) || atomic_load(&sp->flush_waiters) > 0)
		return true;
	if (state == W_BATCH)
		return atomic_load(&sp->inflight_bytes) >= sp->conf.commit_bytes ||
		       pool_pressure(sp);
	if (atomic_load(&sp->acks_queued) != atomic_load(&sp->acks_done) + sp->n_wacks)
		return true;
	if (sp->hooks.on_txn != NULL && atomic_load(&sp->error) == 0 &&
	        atomic_load(&sp->kicks_req) != atomic_load(&sp->kicks_done))
		return true;
	for (unsigned i = 0; i < sp->n_prod; i++)
		if (!ring_empty(&sp->prod[i].to_writer))
			return true;
	return false;
}

/*
 * Sleep until woken or @p timeout_ns. The state store, the fence and the producers'
 * fence + load form a Dekker pair: either the writer sees the new work or the producer
 * sees the sleeping state and wakes it.
 */
static void
writer_sleep(struct tl_spool *sp, uint32_t state, uint64_t timeout_ns)
{
	atomic_store(&sp->wstate, state);
	atomic_thread_fence(memory_order_seq_cst);
	if (!work_waiting(sp, state))
		futex_wait(&sp->wstate, state, timeout_ns);
	atomic_store(&sp->wstate, W_RUN);
}

static void *
writer_main(void *arg)
{
	struct tl_spool *sp = arg;
	uint64_t last_check = now_mono();

	for (;;) {
		bool stopping = atomic_load(&sp->stop);
		uint64_t now, deadline;
		int dead = 0;

		if (now_mono() - last_check > READER_CHECK_NS) {
			last_check = now_mono();
			if (mdb_reader_check(sp->env, &dead) == 0 && dead > 0)
				TL_WARN("spool: cleared %d stale reader slot(s)", dead);
		}
		drain(sp);
		sp->kick_seen = atomic_load(&sp->kicks_req);
		if (sp->n_pending == 0 && sp->n_wacks == 0 &&
		        (sp->kick_seen == atomic_load(&sp->kicks_done) ||
		                sp->hooks.on_txn == NULL || atomic_load(&sp->error) != 0)) {
			notify_flushers(sp);
			if (stopping)
				break;
			writer_sleep(sp, W_IDLE, IDLE_SLEEP_NS);
			continue;
		}
		if (atomic_load(&sp->error) != 0) {
			fail_pending(sp, atomic_load(&sp->error));
			atomic_fetch_add(&sp->acks_done, sp->n_wacks);
			sp->n_wacks = 0;
			notify_flushers(sp);
			continue;
		}
		if (sp->n_pending == 0 && sp->n_wacks == 0) {
			/* Only a kick: nothing to gather, the hook's transaction now. */
			if (commit_round(sp) == ROUND_STALLED)
				writer_sleep(sp, W_IDLE, STALL_SLEEP_NS);
			notify_flushers(sp);
			continue;
		}
		/* Group commit: let a batch gather for commit_interval unless enough is here. */
		now = now_mono();
		deadline = sp->n_pending > 0 ? sp->pending_first : UINT64_MAX;
		if (sp->n_wacks > 0 && sp->wacks_first < deadline)
			deadline = sp->wacks_first;
		deadline += sp->conf.commit_interval_ns;
		if (!stopping && atomic_load(&sp->flush_waiters) == 0 &&
		        sp->pending_bytes < sp->conf.commit_bytes && now < deadline &&
		        !pool_pressure(sp)) {
			writer_sleep(sp, W_BATCH, deadline - now);
			continue;
		}
		if (commit_round(sp) == ROUND_STALLED) {
			if (stopping) {
				/* Closing while full: what cannot be stored is reported lost. */
				fail_pending(sp, -ENOSPC);
				atomic_fetch_add(&sp->acks_done, sp->n_wacks);
				sp->n_wacks = 0;
			} else {
				writer_sleep(sp, W_IDLE, STALL_SLEEP_NS);
			}
		}
		notify_flushers(sp);
	}
	return NULL;
}

/* ---- producers ---- */

static struct sbuf *
own_buf(struct producer *p, struct tl_spool_buf *buf)
{
	uintptr_t a = (uintptr_t)buf, base = (uintptr_t)p->bufs;

	if (a < base || a >= base + (uintptr_t)p->n_bufs * sizeof(struct sbuf) ||
	        (a - base) % sizeof(struct sbuf) != 0)
		return NULL;
	return &p->bufs[(a - base) / sizeof(struct sbuf)];
}

struct tl_spool_buf *
tl_spool_buf_get(struct tl_spool *sp, unsigned producer)
{
	struct producer *p;
	struct sbuf *b;

	if (unlikely(sp == NULL || producer >= sp->n_prod))
		return NULL;
	p = &sp->prod[producer];
	b = ring_pop(&p->free);
	if (unlikely(b == NULL)) {
		add(&p->pool_empty, 1);
		return NULL;
	}
	b->held = 1;
	b->pub.len = 0;
	b->pub.user = 0;
	b->pub.meta_len = 0;
	return &b->pub;
}

/* Hand @p b to the writer and wake it if it sleeps and has reason to get up. */
static void
hand_over(struct tl_spool *sp, struct producer *p, struct sbuf *b)
{
	/* Read before the push: from then on the buffer is the writer's. */
	uint64_t len = b->discard ? 0 : b->pub.len;
	uint64_t inflight, outstanding;
	uint32_t s;

	b->held = 0;
	/* The ring holds the whole pool: a buffer always finds a slot. */
	if (unlikely(p->n_run > 0) && !b->discard) {
		/* The end of a MORE run: the writer sees the whole run at once. */
		uint32_t n;

		for (uint32_t i = 0; i < p->n_run; i++)
			len += p->run[i]->pub.len;
		p->run[p->n_run++] = b;
		n = p->n_run;
		p->n_run = 0;
		ring_push_n(&p->to_writer, p->run, n);
		add(&p->puts, n);
	} else {
		ring_push(&p->to_writer, b);
		add(&p->puts, 1);
	}
	inflight = atomic_fetch_add(&sp->inflight_bytes, len) + len;
	atomic_thread_fence(memory_order_seq_cst);
	s = atomic_load_explicit(&sp->wstate, memory_order_relaxed);
	if (likely(s == W_RUN))
		return;
	outstanding = ld(&p->puts) - ld(&p->done);
	if (s == W_IDLE || inflight >= sp->conf.commit_bytes || outstanding * 2 >= p->n_bufs) {
		if (atomic_compare_exchange_strong(&sp->wstate, &s, W_RUN))
			futex_wake(&sp->wstate);
	}
}

/* Both public puts inline this, so the plain one costs what it did before flags. */
static inline __attribute__((always_inline)) int
buf_put(struct tl_spool *sp, unsigned producer, struct tl_spool_buf *buf, unsigned flags)
{
	struct producer *p;
	struct sbuf *b;
	int err;

	if (unlikely(sp == NULL || producer >= sp->n_prod || buf == NULL))
		return -EINVAL;
	p = &sp->prod[producer];
	b = own_buf(p, buf);
	/* The hook trusts meta_len: never let it read past the side area. */
	if (unlikely(b == NULL || !b->held || buf->len > buf->cap || buf->meta_len > buf->meta_cap))
		return -EINVAL;
	err = atomic_load_explicit(&sp->error, memory_order_relaxed);
	if (unlikely(err != 0))
		return err;
	if (sp->conf.policy == TL_SPOOL_BACKPRESSURE && !(flags & TL_SPOOL_PUT_FORCE) &&
	        unlikely(atomic_load_explicit(&sp->full, memory_order_relaxed))) {
		add(&p->refusals, 1);
		return -ENOSPC;
	}
	b->put_mono = now_mono();
	b->created_ns = now_real();
	b->discard = 0;
	b->force = (flags & TL_SPOOL_PUT_FORCE) != 0;
	b->more = (flags & TL_SPOOL_PUT_MORE) != 0;
	if (b->more) {
		/* Kept here until the run ends: the writer must not see part of it. */
		b->held = 0;
		p->run[p->n_run++] = b;
		return 0;
	}
	hand_over(sp, p, b);
	return 0;
}

int
tl_spool_publish(struct tl_spool *sp, unsigned producer)
{
	struct producer *p;
	struct sbuf *last;

	if (sp == NULL || producer >= sp->n_prod)
		return -EINVAL;
	p = &sp->prod[producer];
	if (p->n_run == 0)
		return 0;
	last = p->run[--p->n_run];
	last->more = 0;
	hand_over(sp, p, last);
	return 0;
}

int
tl_spool_buf_put(struct tl_spool *sp, unsigned producer, struct tl_spool_buf *buf)
{
	return buf_put(sp, producer, buf, 0);
}

int
tl_spool_buf_put_flags(
        struct tl_spool *sp, unsigned producer, struct tl_spool_buf *buf, unsigned flags)
{
	if (unlikely(flags & ~(TL_SPOOL_PUT_FORCE | TL_SPOOL_PUT_MORE)))
		return -EINVAL;
	return buf_put(sp, producer, buf, flags);
}

int
tl_spool_buf_release(struct tl_spool *sp, unsigned producer, struct tl_spool_buf *buf)
{
	struct producer *p;
	struct sbuf *b;

	if (unlikely(sp == NULL || producer >= sp->n_prod || buf == NULL))
		return -EINVAL;
	p = &sp->prod[producer];
	b = own_buf(p, buf);
	if (unlikely(b == NULL || !b->held))
		return -EINVAL;
	/* Through the writer: the free ring has one producer, the writer. */
	b->discard = 1;
	hand_over(sp, p, b);
	return 0;
}

/* ---- acks and flush ---- */

static int
queue_ack(struct tl_spool *sp, uint64_t v)
{
	pthread_mutex_lock(&sp->ack_mu);
	if (sp->n_acks == sp->cap_acks) {
		size_t cap = sp->cap_acks ? sp->cap_acks * 2 : 1024;
		uint64_t *a = realloc(sp->acks, cap * sizeof(*a));

		if (a == NULL) {
			pthread_mutex_unlock(&sp->ack_mu);
			return -ENOMEM;
		}
		sp->acks = a;
		sp->cap_acks = cap;
	}
	if (sp->n_acks == 0)
		sp->acks_first = now_mono();
	sp->acks[sp->n_acks++] = v;
	atomic_fetch_add(&sp->acks_queued, 1);
	pthread_mutex_unlock(&sp->ack_mu);
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load(&sp->wstate) == W_IDLE)
		wake_writer(sp);
	return 0;
}

int
tl_spool_ack(struct tl_spool *sp, uint64_t key)
{
	if (sp == NULL || key == 0 || key > KEY_MASK)
		return -EINVAL;
	if (sp->flags & TL_SPOOL_RDONLY)
		return -EROFS;
	return queue_ack(sp, key);
}

int
tl_spool_claim(struct tl_spool *sp, uint64_t key, unsigned owner)
{
	if (sp == NULL || key == 0 || key > KEY_MASK || owner >= TL_SPOOL_MAX_OWNERS)
		return -EINVAL;
	if ((sp->flags & TL_SPOOL_RDONLY) || !sp->has_owner)
		return -EROFS;
	return queue_ack(sp, key | CLAIM_BIT | ((uint64_t)owner << CLAIM_SHIFT));
}

int
tl_spool_quarantine(struct tl_spool *sp, uint64_t key)
{
	if (sp == NULL || key == 0 || key > KEY_MASK)
		return -EINVAL;
	if (sp->flags & TL_SPOOL_RDONLY)
		return -EROFS;
	return queue_ack(sp, key | QUAR_BIT);
}

static bool
flushed(struct tl_spool *sp, const uint64_t *target, uint64_t acks)
{
	if (atomic_load(&sp->error) != 0)
		return true;
	if (atomic_load(&sp->acks_done) < acks)
		return false;
	for (unsigned i = 0; target != NULL && i < sp->n_prod; i++)
		if (ld(&sp->prod[i].done) < target[i])
			return false;
	return true;
}

int
tl_spool_admit(const struct tl_spool *csp)
{
	/* Atomic loads through a const pointer are not portable C11: drop const here. */
	struct tl_spool *sp = (struct tl_spool *)csp;
	int err;

	if (sp == NULL)
		return -EINVAL;
	err = atomic_load_explicit(&sp->error, memory_order_relaxed);
	if (err != 0)
		return err;
	return atomic_load_explicit(&sp->full, memory_order_relaxed) ? -ENOSPC : 0;
}

bool
tl_spool_writing(const struct tl_spool *sp)
{
	if (sp == NULL)
		return false;
	for (unsigned i = 0; i < sp->n_prod; i++)
		if (ld(&sp->prod[i].puts) != ld(&sp->prod[i].done))
			return true;
	return false;
}

/* Wait until the acks queued so far, and with @p target the producers' records up to it,
 * are committed. */
static int
wait_committed(struct tl_spool *sp, const uint64_t *target, uint64_t timeout_ns)
{
	uint64_t acks, deadline;
	struct timespec ts;
	int rc = 0;

	acks = atomic_load(&sp->acks_queued);
	deadline = now_mono() + timeout_ns;
	atomic_fetch_add(&sp->flush_waiters, 1);
	wake_writer(sp);
	pthread_mutex_lock(&sp->done_mu);
	while (!flushed(sp, target, acks)) {
		uint64_t now = now_mono(), until;

		if (now >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		/* Wake up now and then even without a broadcast: cheap insurance. */
		until = now + (deadline - now < 10000000ull ? deadline - now : 10000000ull);
		ts.tv_sec = (time_t)(until / NSEC);
		ts.tv_nsec = (long)(until % NSEC);
		pthread_cond_timedwait(&sp->done_cv, &sp->done_mu, &ts);
	}
	pthread_mutex_unlock(&sp->done_mu);
	atomic_fetch_sub(&sp->flush_waiters, 1);
	if (rc == 0 && atomic_load(&sp->error) != 0)
		rc = atomic_load(&sp->error);
	return rc;
}

int
tl_spool_flush(struct tl_spool *sp, uint64_t timeout_ns)
{
	uint64_t target[MAX_PRODUCERS];

	if (sp == NULL)
		return -EINVAL;
	if (sp->flags & TL_SPOOL_RDONLY)
		return -EROFS;
	for (unsigned i = 0; i < sp->n_prod; i++)
		target[i] = ld(&sp->prod[i].puts);
	return wait_committed(sp, target, timeout_ns);
}

uint64_t
tl_spool_kick(struct tl_spool *sp)
{
	uint64_t n;

	if (sp == NULL || (sp->flags & TL_SPOOL_RDONLY))
		return 0;
	n = atomic_fetch_add(&sp->kicks_req, 1) + 1;
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load(&sp->wstate) == W_IDLE)
		wake_writer(sp);
	return n;
}

int
tl_spool_kick_wait(struct tl_spool *sp, uint64_t kick, uint64_t timeout_ns)
{
	uint64_t deadline = now_mono() + timeout_ns;

	if (sp == NULL || kick == 0)
		return -EINVAL;
	while (atomic_load(&sp->kicks_done) < kick) {
		if (atomic_load(&sp->error) != 0)
			return atomic_load(&sp->error);
		if (now_mono() >= deadline)
			return -ETIMEDOUT;
		usleep(1000);
	}
	return 0;
}

int
tl_spool_sync_acks(struct tl_spool *sp, uint64_t timeout_ns)
{
	if (sp == NULL)
		return -EINVAL;
	if (sp->flags & TL_SPOOL_RDONLY)
		return -EROFS;
	return wait_committed(sp, NULL, timeout_ns);
}

/* ---- readers ---- */

static int
begin_read(struct tl_spool *sp, MDB_txn **txn)
{
	int rc;

	pthread_rwlock_rdlock(&sp->map_lock);
	rc = mdb_txn_begin(sp->env, NULL, MDB_RDONLY, txn);
	if (rc == MDB_MAP_RESIZED) {
		/* Another process (the running appliance) grew the map: adopt its size. */
		pthread_rwlock_unlock(&sp->map_lock);
		pthread_rwlock_wrlock(&sp->map_lock);
		rc = mdb_env_set_mapsize(sp->env, 0);
		pthread_rwlock_unlock(&sp->map_lock);
		pthread_rwlock_rdlock(&sp->map_lock);
		if (rc == 0)
			rc = mdb_txn_begin(sp->env, NULL, MDB_RDONLY, txn);
	}
	if (rc != 0) {
		pthread_rwlock_unlock(&sp->map_lock);
		return mdb_fail("read transaction", rc);
	}
	return 0;
}

static void
end_read(struct tl_spool *sp, MDB_txn *txn)
{
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&sp->map_lock);
}

static int
read_db(struct tl_spool *sp, bool quar, uint64_t from_key, unsigned max, tl_spool_read_fn fn,
        void *arg, uint64_t *next_key)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	uint8_t kb[8];
	MDB_val k = {.mv_size = 8, .mv_data = kb}, v;
	uint64_t next = from_key;
	int rc, n = 0;

	if (sp == NULL || fn == NULL)
		return -EINVAL;
	if (max > INT_MAX)
		max = INT_MAX;
	if (max == 0)
		goto out;
	rc = begin_read(sp, &txn);
	if (rc < 0)
		return rc;
	rc = mdb_cursor_open(txn, quar ? sp->dbi_quar : sp->dbi_rec, &cur);
	if (rc != 0) {
		end_read(sp, txn);
		return mdb_fail("cursor", rc);
	}
	key_enc(from_key, kb);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && (unsigned)n < max;
	        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct tl_spool_rec rec = {0};
		int r;

		if (quar) {
			rec.key = k.mv_size == 8 ? key_dec(k.mv_data) : 0;
			rec.data = v.mv_data;
			rec.len = (uint32_t)v.mv_size;
		} else if (rec_parse(&k, &v, &rec) != 0) {
			/* Damaged since recovery: skip it and have the writer quarantine it. */
			TL_LOG_RATELIMITED(
			        TL_LOG_WARN, 5, "spool: damaged record queued for quarantine");
			if (k.mv_size == 8) {
				next = key_dec(k.mv_data) + 1;
				if (!(sp->flags & TL_SPOOL_RDONLY))
					queue_ack(sp, key_dec(k.mv_data) | QUAR_BIT);
			}
			continue;
		}
		rec.owner = -1;
		if (!quar && sp->has_owner &&
		        atomic_load_explicit(&sp->owners, memory_order_relaxed)) {
			MDB_val ov;

			if (mdb_get(txn, sp->dbi_owner, &k, &ov) == 0 && ov.mv_size == 1)
				rec.owner = *(const uint8_t *)ov.mv_data;
		}
		r = fn(arg, &rec);
		if (r < 0) {
			next = rec.key;
			break;
		}
		n++;
		next = rec.key + 1;
		if (r > 0)
			break;
	}
	mdb_cursor_close(cur);
	end_read(sp, txn);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mdb_fail("read", rc);
out:
	if (next_key != NULL)
		*next_key = next;
	return n;
}

int
tl_spool_read(struct tl_spool *sp, uint64_t from_key, unsigned max, tl_spool_read_fn fn, void *arg,
        uint64_t *next_key)
{
	return read_db(sp, false, from_key, max, fn, arg, next_key);
}

int
tl_spool_read_quarantine(struct tl_spool *sp, uint64_t from_key, unsigned max, tl_spool_read_fn fn,
        void *arg, uint64_t *next_key)
{
	return read_db(sp, true, from_key, max, fn, arg, next_key);
}

/* ---- transaction hook and state ---- */

/* No buffer of any producer was ever taken: the free rings were never consumed. */
static bool
buffers_untouched(struct tl_spool *sp)
{
	for (unsigned i = 0; i < sp->n_prod; i++)
		if (atomic_load_explicit(&sp->prod[i].free.head, memory_order_acquire) != 0)
			return false;
	return true;
}

int
tl_spool_set_hooks(struct tl_spool *sp, const struct tl_spool_hooks *h)
{
	uint64_t stride;
	int zero = 0, rc;

	if (sp == NULL || h == NULL || (sp->flags & TL_SPOOL_RDONLY) ||
	        h->meta_size > HOOK_META_MAX)
		return -EINVAL;
	if (!atomic_compare_exchange_strong(&sp->hooks_claimed, &zero, 1))
		return -EBUSY;
	/* The side areas are attached to buffers a producer could already hold. */
	if (!buffers_untouched(sp)) {
		rc = -EBUSY;
		goto fail;
	}
	rc = -ENOMEM;
	if (h->on_txn != NULL) {
		/* At most every buffer of every pool is in one transaction. */
		sp->hook_bufs =
		        calloc((size_t)sp->n_prod * sp->conf.buffers + 1, sizeof(*sp->hook_bufs));
		if (sp->hook_bufs == NULL)
			goto fail;
	}
	stride = round_up(h->meta_size, 64);
	for (unsigned i = 0; i < sp->n_prod && h->meta_size > 0; i++) {
		struct producer *p = &sp->prod[i];

		p->meta_mem = aligned_alloc(64, p->n_bufs * stride);
		if (p->meta_mem == NULL)
			goto fail;
		/* Zeroed: a hook reading meta the producer left short sees no stale heap. */
		memset(p->meta_mem, 0, p->n_bufs * stride);
	}
	for (unsigned i = 0; i < sp->n_prod && h->meta_size > 0; i++) {
		struct producer *p = &sp->prod[i];

		for (uint32_t j = 0; j < p->n_bufs; j++) {
			p->bufs[j].pub.meta = p->meta_mem + j * stride;
			p->bufs[j].pub.meta_cap = h->meta_size;
		}
	}
	sp->hooks = *h;
	/* The writer reads sp->hooks only after seeing this. */
	atomic_store_explicit(&sp->hooks_ready, 1, memory_order_release);
	return 0;
fail:
	for (unsigned i = 0; i < sp->n_prod; i++) {
		free(sp->prod[i].meta_mem);
		sp->prod[i].meta_mem = NULL;
	}
	free(sp->hook_bufs);
	sp->hook_bufs = NULL;
	atomic_store(&sp->hooks_claimed, 0);
	return rc;
}

/* @return the name's length, or 0 if it is empty, too long or NULL. */
static size_t
state_name_len(const char *name)
{
	size_t n;

	if (name == NULL)
		return 0;
	n = strnlen(name, TL_SPOOL_STATE_NAME_MAX + 1);
	return n <= TL_SPOOL_STATE_NAME_MAX ? n : 0;
}

unsigned
tl_spool_txn_attempt(const struct tl_spool_txn *t)
{
	return t ? t->attempt : 0;
}

int
tl_spool_txn_put_record(
        struct tl_spool_txn *t, unsigned producer, const void *data, uint32_t len, uint64_t *key)
{
	struct rec_hdr h;
	uint8_t kb[8];
	MDB_val k = {.mv_size = 8, .mv_data = kb}, v;
	int rc;

	if (t == NULL || (data == NULL && len > 0) || producer >= t->sp->n_prod ||
	        len > t->sp->conf.buffer_size)
		return -EINVAL;
	if (t->map_full)
		return -ENOSPC;
	if (t->err != 0)
		return t->err;
	h.magic = htole32(REC_MAGIC);
	h.version = htole16(REC_VERSION);
	h.producer = htole16((uint16_t)producer);
	h.len = htole32(len);
	h.reserved = 0;
	h.created_ns = htole64(now_real());
	h.xxh3 = htole64(XXH3_64bits(data, len));
	key_enc(*t->key, kb);
	v.mv_size = REC_HDR + (size_t)len;
	rc = mdb_put(t->txn, t->sp->dbi_rec, &k, &v, MDB_APPEND | MDB_RESERVE);
	if (rc == MDB_MAP_FULL) {
		t->map_full = true;
		return -ENOSPC;
	}
	if (rc != 0) {
		t->err = mdb_fail("record put", rc);
		return t->err;
	}
	memcpy(v.mv_data, &h, REC_HDR);
	memcpy((uint8_t *)v.mv_data + REC_HDR, data, len);
	if (key != NULL)
		*key = *t->key;
	(*t->key)++;
	t->o->written++;
	t->o->written_bytes += len;
	t->o->value_bytes += REC_HDR + len;
	return 0;
}

int
tl_spool_txn_state_put(struct tl_spool_txn *t, const char *name, const void *val, size_t len)
{
	size_t nl = state_name_len(name);
	MDB_val k, v;
	int rc;

	if (t == NULL || nl == 0 || (val == NULL && len > 0))
		return -EINVAL;
	/* After a failed put LMDB refuses the transaction: report the first failure. */
	if (t->map_full)
		return -ENOSPC;
	if (t->err != 0)
		return t->err;
	k.mv_size = nl;
	k.mv_data = (void *)name;
	v.mv_size = len;
	v.mv_data = val != NULL ? (void *)val : (void *)"";
	rc = mdb_put(t->txn, t->sp->dbi_state, &k, &v, 0);
	if (rc == MDB_MAP_FULL) {
		t->map_full = true;
		return -ENOSPC;
	}
	if (rc != 0) {
		t->err = mdb_fail("state put", rc);
		return t->err;
	}
	return 0;
}

int
tl_spool_state_get(struct tl_spool *sp, const char *name, void **val, size_t *len)
{
	size_t nl = state_name_len(name);
	MDB_val k = {.mv_size = nl, .mv_data = (void *)name}, v;
	MDB_txn *txn;
	int rc;

	if (val != NULL)
		*val = NULL;
	if (len != NULL)
		*len = 0;
	if (sp == NULL || nl == 0 || val == NULL || len == NULL)
		return -EINVAL;
	if (!sp->has_state)
		return 0;
	rc = begin_read(sp, &txn);
	if (rc < 0)
		return rc;
	rc = mdb_get(txn, sp->dbi_state, &k, &v);
	if (rc == MDB_NOTFOUND) {
		rc = 0;
	} else if (rc != 0) {
		rc = mdb_fail("state get", rc);
	} else {
		/* Never NULL when present, even empty: absent and empty stay distinct. */
		*val = malloc(v.mv_size ? v.mv_size : 1);
		if (*val == NULL) {
			rc = -ENOMEM;
		} else {
			memcpy(*val, v.mv_data, v.mv_size);
			*len = v.mv_size;
		}
	}
	end_read(sp, txn);
	return rc;
}

int
tl_spool_txn_state_del(struct tl_spool_txn *t, const char *name)
{
	size_t nl = state_name_len(name);
	MDB_val k = {.mv_size = nl, .mv_data = (void *)name};
	int rc;

	if (t == NULL || nl == 0)
		return -EINVAL;
	if (t->map_full)
		return -ENOSPC;
	if (t->err != 0)
		return t->err;
	rc = mdb_del(t->txn, t->sp->dbi_state, &k, NULL);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc == MDB_MAP_FULL) {
		t->map_full = true;
		return -ENOSPC;
	}
	if (rc != 0) {
		t->err = mdb_fail("state delete", rc);
		return t->err;
	}
	return 0;
}

int
tl_spool_state_scan(struct tl_spool *sp, const char *prefix, tl_spool_state_fn fn, void *arg)
{
	size_t pl = prefix ? strlen(prefix) : 0;
	MDB_val k = {.mv_size = pl, .mv_data = (void *)prefix}, v;
	MDB_cursor *cur;
	MDB_txn *txn;
	int rc, n = 0;

	if (sp == NULL || fn == NULL || pl == 0 || pl > TL_SPOOL_STATE_NAME_MAX)
		return -EINVAL;
	if (!sp->has_state)
		return 0;
	rc = begin_read(sp, &txn);
	if (rc < 0)
		return rc;
	rc = mdb_cursor_open(txn, sp->dbi_state, &cur);
	if (rc != 0) {
		end_read(sp, txn);
		return mdb_fail("state scan", rc);
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char name[TL_SPOOL_STATE_NAME_MAX + 1];
		int r;

		if (k.mv_size < pl || memcmp(k.mv_data, prefix, pl) != 0 ||
		        k.mv_size > TL_SPOOL_STATE_NAME_MAX)
			break;
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		r = fn(arg, name, v.mv_data, v.mv_size);
		n++;
		if (r != 0)
			break;
	}
	mdb_cursor_close(cur);
	end_read(sp, txn);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mdb_fail("state scan", rc);
	return n;
}

/* ---- stats ---- */

void
tl_spool_stats(const struct tl_spool *csp, struct tl_spool_stats *st)
{
	/* Atomic loads through a const pointer are not portable C11: drop const here. */
	struct tl_spool *sp = (struct tl_spool *)csp;
	uint64_t oldest;

	if (st == NULL)
		return;
	memset(st, 0, sizeof(*st));
	if (sp == NULL)
		return;
	st->records = ld(&sp->st.records);
	st->bytes = ld(&sp->st.bytes);
	oldest = ld(&sp->st.oldest_created);
	if (st->records > 0 && oldest > 0) {
		uint64_t now = now_real();

		st->oldest_age_ns = now > oldest ? now - oldest : 0;
	}
	st->next_key = ld(&sp->st.next_key);
	st->commits = ld(&sp->st.commits);
	st->records_committed = ld(&sp->st.records_committed);
	st->bytes_committed = ld(&sp->st.bytes_committed);
	st->bytes_written = ld(&sp->st.bytes_written);
	st->max_records_per_commit = ld(&sp->st.max_per_commit);
	for (int i = 0; i < TL_SPOOL_HIST; i++) {
		st->commit_ns[i] = ld(&sp->st.commit_ns[i]);
		st->wait_ns[i] = ld(&sp->st.wait_ns[i]);
		st->records_per_commit[i] = ld(&sp->st.per_commit[i]);
	}
	st->acked = ld(&sp->st.acked);
	st->ack_unknown = ld(&sp->st.ack_unknown);
	st->map_size = ld(&sp->st.map_size);
	st->map_grows = ld(&sp->st.map_grows);
	st->used_bytes = ld(&sp->st.used_bytes);
	st->max_size = sp->conf.max_size;
	st->high_water_bytes = sp->hw_bytes;
	st->high_water_hits = ld(&sp->st.hw_hits);
	st->full = ld(&sp->st.full);
	st->dropped_newest = ld(&sp->st.dropped_newest);
	st->dropped_oldest = ld(&sp->st.dropped_oldest);
	st->quarantined = ld(&sp->st.quarantined);
	st->quarantine_records = ld(&sp->st.quarantine_records);
	st->lost = ld(&sp->st.lost);
	st->error = atomic_load(&sp->error);
	for (unsigned i = 0; i < sp->n_prod; i++) {
		st->backpressure += ld(&sp->prod[i].refusals);
		st->pool_empty += ld(&sp->prod[i].pool_empty);
	}
}

/* ---- open, recovery, close ---- */

static int
open_dbis(struct tl_spool *sp, MDB_txn *txn)
{
	unsigned f = (sp->flags & TL_SPOOL_RDONLY) ? 0 : MDB_CREATE;
	MDB_val k = {.mv_size = 6, .mv_data = "format"}, v;
	uint32_t fmt = htole32(FORMAT_VERSION), have;
	int rc;

	rc = mdb_dbi_open(txn, "records", f, &sp->dbi_rec);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "quarantine", f, &sp->dbi_quar);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "meta", f, &sp->dbi_meta);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc != 0)
		return mdb_fail("mdb_dbi_open", rc);
	/* A read-only look at a spool written before `state` existed: no state, no error. */
	rc = mdb_dbi_open(txn, "state", f, &sp->dbi_state);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mdb_fail("mdb_dbi_open", rc);
	sp->has_state = rc == 0;
	if (sp->has_state) {
		MDB_stat os;

		rc = mdb_dbi_open(txn, "owner", f, &sp->dbi_owner);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return mdb_fail("mdb_dbi_open", rc);
		sp->has_owner = rc == 0;
		if (sp->has_owner && mdb_stat(txn, sp->dbi_owner, &os) == 0 && os.ms_entries > 0)
			atomic_store(&sp->owners, true);
	}
	rc = mdb_get(txn, sp->dbi_meta, &k, &v);
	if (rc == MDB_NOTFOUND && !(sp->flags & TL_SPOOL_RDONLY)) {
		v.mv_size = 4;
		v.mv_data = &fmt;
		rc = mdb_put(txn, sp->dbi_meta, &k, &v, 0);
		return rc ? mdb_fail("format", rc) : 0;
	}
	if (rc != 0)
		return rc == MDB_NOTFOUND ? -ENOENT : mdb_fail("format", rc);
	if (v.mv_size != 4)
		return TL_E_SPOOL_CORRUPT;
	memcpy(&have, v.mv_data, 4);
	if (le32toh(have) != FORMAT_VERSION) {
		TL_ERR("spool: format %u, this build reads %u", le32toh(have), FORMAT_VERSION);
		return TL_E_SPOOL;
	}
	return 0;
}

/*
 * Verify every record; move damaged ones to quarantine (raw key and bytes; with @p copy
 * false they are only deleted, for when even the quarantine does not fit). Recomputes
 * records, bytes, oldest and the next key. Read-only: only counts.
 */
static int
recover_scan(struct tl_spool *sp, MDB_txn *txn, bool copy)
{
	bool ro = sp->flags & TL_SPOOL_RDONLY;
	uint64_t records = 0, bytes = 0, oldest = 0, next = 1, bad = 0;
	MDB_cursor *cur;
	MDB_val k = {.mv_size = 8, .mv_data = "next_key"}, v;
	MDB_stat qs;
	int rc;

	rc = mdb_get(txn, sp->dbi_meta, &k, &v);
	if (rc == 0 && v.mv_size == 8) {
		uint64_t le;

		memcpy(&le, v.mv_data, 8);
		next = le64toh(le);
	}
	rc = mdb_cursor_open(txn, sp->dbi_rec, &cur);
	if (rc != 0)
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct tl_spool_rec rec;

		if (k.mv_size == 8 && key_dec(k.mv_data) >= next)
			next = key_dec(k.mv_data) + 1;
		if (rec_parse(&k, &v, &rec) == 0) {
			if (records++ == 0)
				oldest = rec.created_ns;
			bytes += rec.len;
			continue;
		}
		bad++;
		if (ro)
			continue;
		TL_WARN("spool: record %s%llu damaged (%zu bytes): quarantined",
		        k.mv_size == 8 ? "" : "with a malformed key, size ",
		        (unsigned long long)(k.mv_size == 8 ? key_dec(k.mv_data) : k.mv_size),
		        v.mv_size);
		if (copy) {
			rc = mdb_put(txn, sp->dbi_quar, &k, &v, 0);
			if (rc != 0)
				break;
		}
		/* After a delete the cursor already sits on the next record (LMDB C_DEL). */
		rc = mdb_cursor_del(cur, 0);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return rc;
	if (next == 0)
		next = 1;
	sp->next_key = next;
	set(&sp->st.records, records);
	set(&sp->st.bytes, bytes);
	set(&sp->st.oldest_created, oldest);
	set(&sp->st.next_key, next);
	set(&sp->st.quarantined, bad);
	if (mdb_stat(txn, sp->dbi_quar, &qs) == 0)
		set(&sp->st.quarantine_records, qs.ms_entries);
	set(&sp->st.used_bytes, used_bytes(sp, txn));
	return 0;
}

static int
recover(struct tl_spool *sp)
{
	bool ro = sp->flags & TL_SPOOL_RDONLY;
	bool copy = true;
	MDB_txn *txn;
	int rc;

	for (int attempt = 0; attempt < 64; attempt++) {
		rc = mdb_txn_begin(sp->env, NULL, ro ? MDB_RDONLY : 0, &txn);
		if (rc != 0)
			return mdb_fail("recovery transaction", rc);
		rc = open_dbis(sp, txn);
		if (rc < 0) {
			mdb_txn_abort(txn);
			return rc;
		}
		rc = recover_scan(sp, txn, copy);
		if (rc == 0) {
			/* Commit keeps the dbi handles, in read-only mode too. */
			rc = mdb_txn_commit(txn);
		} else {
			mdb_txn_abort(txn);
		}
		if (rc == 0)
			return 0;
		if (rc != MDB_MAP_FULL)
			return mdb_fail("recovery", rc);
		rc = grow_map(sp);
		if (rc == -ENOSPC)
			copy = false; /* never wedge: drop damaged bytes rather than stay down */
		else if (rc < 0 && rc != -EAGAIN)
			return rc;
	}
	return TL_E_SPOOL;
}

static int
init_producers(struct tl_spool *sp)
{
	uint64_t stride = round_up(REC_HDR * 2 + sp->conf.buffer_size, 64);

	if (sp->n_prod == 0)
		return 0;
	sp->prod = aligned_alloc(64, round_up(sp->n_prod * sizeof(*sp->prod), 64));
	if (sp->prod == NULL)
		return -ENOMEM;
	memset(sp->prod, 0, sp->n_prod * sizeof(*sp->prod));
	for (unsigned i = 0; i < sp->n_prod; i++) {
		struct producer *p = &sp->prod[i];

		p->n_bufs = (uint32_t)sp->conf.buffers;
		p->bufs = calloc(p->n_bufs, sizeof(*p->bufs));
		p->run = calloc(p->n_bufs, sizeof(*p->run));
		p->mem = aligned_alloc(64, p->n_bufs * stride);
		if (p->bufs == NULL || p->mem == NULL || p->run == NULL)
			return -ENOMEM;
		if (ring_init(&p->to_writer, p->n_bufs) < 0 || ring_init(&p->free, p->n_bufs) < 0)
			return -ENOMEM;
		for (uint32_t j = 0; j < p->n_bufs; j++) {
			struct sbuf *b = &p->bufs[j];

			/* Payload 64-byte aligned with the record header right before it. */
			b->pub.data = p->mem + j * stride + REC_HDR * 2;
			b->pub.cap = (uint32_t)sp->conf.buffer_size;
			b->producer = (uint16_t)i;
			ring_push(&p->free, b);
		}
	}
	return 0;
}

static void
free_producers(struct tl_spool *sp)
{
	if (sp->prod == NULL)
		return;
	for (unsigned i = 0; i < sp->n_prod; i++) {
		free(sp->prod[i].bufs);
		free(sp->prod[i].run);
		free(sp->prod[i].mem);
		free(sp->prod[i].meta_mem);
		free(sp->prod[i].to_writer.slot);
		free(sp->prod[i].free.slot);
	}
	free(sp->prod);
}

static int
init_sync(struct tl_spool *sp)
{
	pthread_rwlockattr_t ra;
	pthread_condattr_t ca;
	int rc;

	/* Writer-preferring: a pending resize is not starved by a stream of readers. */
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	rc = pthread_rwlock_init(&sp->map_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	if (rc != 0)
		return -rc;
	sp->map_lock_init = true;
	rc = pthread_mutex_init(&sp->ack_mu, NULL);
	if (rc != 0)
		return -rc;
	sp->ack_mu_init = true;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&sp->done_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0)
		return -rc;
	rc = pthread_mutex_init(&sp->done_mu, NULL);
	if (rc != 0) {
		pthread_cond_destroy(&sp->done_cv);
		return -rc;
	}
	sp->done_init = true;
	return 0;
}

static int
open_env(struct tl_spool *sp)
{
	bool ro = sp->flags & TL_SPOOL_RDONLY;
	unsigned f = MDB_NOTLS | (ro ? MDB_RDONLY : 0) | (sp->conf.nosync ? MDB_NOSYNC : 0);
	char file[TL_SPOOL_PATH_LEN + 16];
	MDB_stat es;
	int dead = 0, rc;

	if (ro) {
		snprintf(file, sizeof(file), "%s/data.mdb", sp->conf.path);
		if (access(file, R_OK) != 0)
			return -errno;
	} else {
		if (mkdir(sp->conf.path, 0750) != 0 && errno != EEXIST) {
			rc = -errno;
			TL_ERR("spool: mkdir %s: %s", sp->conf.path, strerror(-rc));
			return rc;
		}
		/*
		 * Two read-write openers would both assign keys; LMDB also forbids opening one
		 * environment twice in a process. The kernel drops the lock if we die.
		 */
		snprintf(file, sizeof(file), "%s/writer.lock", sp->conf.path);
		sp->lock_fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
		if (sp->lock_fd < 0)
			return -errno;
		if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) != 0) {
			rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
			TL_ERR("spool: %s is in use by another writer", sp->conf.path);
			return rc;
		}
	}
	rc = mdb_env_create(&sp->env);
	if (rc != 0)
		return mdb_fail("mdb_env_create", rc);
	rc = mdb_env_set_maxdbs(sp->env, MAX_DBS);
	if (rc == 0 && !ro)
		rc = mdb_env_set_mapsize(sp->env,
		        (size_t)round_up(sp->conf.initial_size, (uint64_t)sysconf(_SC_PAGESIZE)));
	if (rc != 0)
		return mdb_fail("mdb_env_set_mapsize", rc);
	rc = mdb_env_open(sp->env, sp->conf.path, f, 0640);
	if (rc != 0) {
		TL_ERR("spool: open %s: %s", sp->conf.path, mdb_strerror(rc));
		return mdb_to_err(rc);
	}
	/* Reader slots of processes that died (kill -9) would pin old pages forever. */
	if (mdb_reader_check(sp->env, &dead) == 0 && dead > 0)
		TL_WARN("spool: cleared %d stale reader slot(s)", dead);
	rc = mdb_env_stat(sp->env, &es);
	if (rc != 0)
		return mdb_fail("mdb_env_stat", rc);
	sp->psize = es.ms_psize;
	set(&sp->st.map_size, map_size_now(sp));
	return 0;
}

int
tl_spool_open(const struct tl_spool_conf *conf, unsigned n_producers, unsigned flags,
        tl_spool_commit_fn on_commit, void *arg, struct tl_spool **out)
{
	struct tl_spool *sp;
	char msg[160];
	int rc;

	if (out != NULL)
		*out = NULL;
	if (conf == NULL || out == NULL || n_producers > MAX_PRODUCERS ||
	        (flags & ~TL_SPOOL_RDONLY) != 0)
		return -EINVAL;
	if ((flags & TL_SPOOL_RDONLY) && (n_producers > 0 || on_commit != NULL))
		return -EINVAL;
	if (memchr(conf->path, '\0', sizeof(conf->path)) == NULL ||
	        tl_spool_check(conf, msg, sizeof(msg)) != 0)
		return -EINVAL;
	sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		return -ENOMEM;
	sp->conf = *conf;
	sp->flags = flags;
	sp->n_prod = n_producers;
	sp->on_commit = on_commit;
	sp->cb_arg = arg;
	sp->hw_bytes = conf->max_size / 100 * conf->high_water_pct;
	sp->pending_first = UINT64_MAX;
	sp->wacks_first = UINT64_MAX;
	sp->lock_fd = -1;
	rc = init_sync(sp);
	if (rc < 0)
		goto fail;
	rc = open_env(sp);
	if (rc < 0)
		goto fail;
	sp->buf_need = value_pages(sp, REC_HDR + conf->buffer_size) * sp->psize;
	rc = recover(sp);
	if (rc < 0)
		goto fail;
	if (ld(&sp->st.quarantined) > 0)
		TL_WARN("spool: %llu damaged record(s) %s",
		        (unsigned long long)ld(&sp->st.quarantined),
		        (flags & TL_SPOOL_RDONLY) ? "found" : "quarantined");
	update_full(sp, false, ld(&sp->st.used_bytes));
	set(&sp->st.hw_hits, 0);
	if (flags & TL_SPOOL_RDONLY) {
		*out = sp;
		return 0;
	}
	sp->pending = calloc((size_t)n_producers * conf->buffers + 1, sizeof(*sp->pending));
	if (sp->pending == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = init_producers(sp);
	if (rc < 0)
		goto fail;
	rc = pthread_create(&sp->writer, NULL, writer_main, sp);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	pthread_setname_np(sp->writer, "tl-spool");
	sp->writer_started = true;
	*out = sp;
	return 0;
fail:
	tl_spool_close(sp);
	return rc;
}

void
tl_spool_close(struct tl_spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->writer_started) {
		/* Runs a producer left open still go, whole. */
		for (unsigned i = 0; i < sp->n_prod; i++)
			tl_spool_publish(sp, i);
		atomic_store(&sp->stop, 1);
		wake_writer(sp);
		pthread_join(sp->writer, NULL);
	}
	if (sp->env != NULL)
		mdb_env_close(sp->env);
	if (sp->lock_fd >= 0)
		close(sp->lock_fd);
	free_producers(sp);
	free(sp->hook_bufs);
	free(sp->pending);
	free(sp->acks);
	free(sp->wacks);
	if (sp->done_init) {
		pthread_cond_destroy(&sp->done_cv);
		pthread_mutex_destroy(&sp->done_mu);
	}
	if (sp->ack_mu_init)
		pthread_mutex_destroy(&sp->ack_mu);
	if (sp->map_lock_init)
		pthread_rwlock_destroy(&sp->map_lock);
	free(sp);
}

/* ---- benchmark ---- */

struct bench {
	struct tl_spool *sp;
	const void *payload;
	uint32_t len;
	uint64_t deadline;
	_Atomic uint64_t committed;
	_Atomic uint64_t failed;
};

static void
bench_commit(void *arg, unsigned producer, uint64_t user, uint64_t key, int status)
{
	struct bench *bn = arg;

	(void)producer;
	(void)user;
	if (status == 0) {
		atomic_fetch_add_explicit(&bn->committed, 1, memory_order_relaxed);
		/* Steady state: deliver at once, so deletes share the writer's transactions. */
		tl_spool_ack(bn->sp, key);
	} else {
		atomic_fetch_add_explicit(&bn->failed, 1, memory_order_relaxed);
	}
}

static void *
bench_producer(void *arg)
{
	struct bench *bn = arg;
	const struct timespec pause = {.tv_nsec = 20000};

	while (now_mono() < bn->deadline) {
		struct tl_spool_buf *b = tl_spool_buf_get(bn->sp, 0);

		if (b == NULL) {
			/* Pool exhausted: the disk is the bottleneck; a worker would do RX. */
			nanosleep(&pause, NULL);
			continue;
		}
		memcpy(b->data, bn->payload, bn->len);
		b->len = bn->len;
		if (tl_spool_buf_put(bn->sp, 0, b) < 0)
			break;
	}
	return NULL;
}

static double
hist_quantile(const uint64_t *h, double q)
{
	uint64_t total = 0, acc = 0;

	for (int i = 0; i < TL_SPOOL_HIST; i++)
		total += h[i];
	if (total == 0)
		return 0;
	for (int i = 0; i < TL_SPOOL_HIST; i++) {
		acc += h[i];
		if ((double)acc >= q * (double)total)
			return (double)(UINT64_C(2) << i);
	}
	return (double)(UINT64_C(2) << (TL_SPOOL_HIST - 1));
}

static void
remove_env(const char *dir)
{
	char f[TL_SPOOL_PATH_LEN + 16];

	snprintf(f, sizeof(f), "%s/data.mdb", dir);
	unlink(f);
	snprintf(f, sizeof(f), "%s/lock.mdb", dir);
	unlink(f);
	snprintf(f, sizeof(f), "%s/writer.lock", dir);
	unlink(f);
}

int
tl_spool_bench(const struct tl_spool_conf *conf, const void *payload, uint32_t len,
        uint32_t events_per_record, uint64_t duration_ns, struct tl_spool_bench_result *res)
{
	struct bench bn = {.payload = payload, .len = len};
	struct tl_spool_stats st;
	char f[TL_SPOOL_PATH_LEN + 16];
	pthread_t th;
	uint64_t t0, t1;
	int rc;

	if (conf == NULL || payload == NULL || len == 0 || len > conf->buffer_size || res == NULL ||
	        duration_ns == 0 || events_per_record == 0 ||
	        memchr(conf->path, '\0', sizeof(conf->path)) == NULL)
		return -EINVAL;
	memset(res, 0, sizeof(*res));
	snprintf(f, sizeof(f), "%s/data.mdb", conf->path);
	if (access(f, F_OK) == 0)
		return -EEXIST;
	rc = tl_spool_open(conf, 1, 0, bench_commit, &bn, &bn.sp);
	if (rc < 0)
		return rc;
	t0 = now_mono();
	bn.deadline = t0 + duration_ns;
	rc = pthread_create(&th, NULL, bench_producer, &bn);
	if (rc != 0) {
		tl_spool_close(bn.sp);
		remove_env(conf->path);
		return -rc;
	}
	pthread_join(th, NULL);
	rc = tl_spool_flush(bn.sp, 60 * NSEC);
	t1 = now_mono();
	tl_spool_stats(bn.sp, &st);
	tl_spool_close(bn.sp);
	remove_env(conf->path);
	if (rc < 0)
		return rc;
	res->elapsed_ns = t1 - t0;
	res->records = atomic_load(&bn.committed);
	res->events = res->records * events_per_record;
	res->payload_bytes = res->records * len;
	res->commits = st.commits;
	res->records_per_s = (double)res->records * 1e9 / (double)res->elapsed_ns;
	res->events_per_s = res->records_per_s * events_per_record;
	res->mb_per_s = (double)res->payload_bytes * 1e3 / (double)res->elapsed_ns;
	res->commit_p50_ns = hist_quantile(st.commit_ns, 0.50);
	res->commit_p99_ns = hist_quantile(st.commit_ns, 0.99);
	return atomic_load(&bn.failed) ? TL_E_SPOOL : 0;
}
