/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_failover.h"

#define MAP_MIN 1024 /* first size of the key maps (a power of two) */

const char *const tl_failover_policy_names[] = {"first_healthy", "all", NULL};

#define POLICY_OPT(tbl, name_)                                                                     \
	{                                                                                          \
		.name = name_, .type = TL_OPT_ENUM, .def = "first_healthy",                        \
		.offset = offsetof(struct tl_failover_conf, policy) + (tbl) * sizeof(int),         \
		.enums = tl_failover_policy_names,                                                 \
		.desc = "where " name_ " batches go: the first healthy target, or all"             \
	}

const struct tl_opt tl_failover_opts[] = {
        {.name = "targets",
                .type = TL_OPT_STRLIST,
                .offset = offsetof(struct tl_failover_conf, targets),
                .size = TL_FAILOVER_URL_LEN,
                .count_offset = offsetof(struct tl_failover_conf, n_targets),
                .max_items = TL_FAILOVER_MAX_TARGETS - 1,
                .desc = "more ClickHouse endpoints after uplink.url, in order of preference "
                        "(same database, user and password)"},
        POLICY_OPT(TL_BATCH_SINK_OUTPUT, "sink_output"),
        POLICY_OPT(TL_BATCH_ERROR_EVENTS, "error_events"),
        POLICY_OPT(TL_BATCH_DEAD_LETTER, "dead_letter"),
        POLICY_OPT(TL_BATCH_ROLLUPS, "rollups"),
        {.name = "health_interval",
                .type = TL_OPT_DURATION,
                .def = "1s",
                .offset = offsetof(struct tl_failover_conf, health_interval),
                .min = 10000000ull,
                .max = 3600000000000ull,
                .desc = "time between health checks (SELECT 1) of each target"},
        {.name = "health_timeout",
                .type = TL_OPT_DURATION,
                .def = "1s",
                .offset = offsetof(struct tl_failover_conf, health_timeout),
                .min = 10000000ull,
                .max = 600000000000ull,
                .desc = "a health check that takes longer has failed"},
        {.name = "failures",
                .type = TL_OPT_UINT,
                .def = "3",
                .offset = offsetof(struct tl_failover_conf, failures),
                .min = 1,
                .max = 1000,
                .desc = "consecutive failures (inserts or checks) that open a target's "
                        "circuit breaker"},
        {.name = NULL},
};

int
tl_failover_check(const void *obj, char *msg, size_t msglen)
{
	const struct tl_failover_conf *c = obj;

	for (uint32_t i = 0; i < c->n_targets; i++)
		if (strncmp(c->targets[i], "http://", 7) != 0 &&
		        strncmp(c->targets[i], "https://", 8) != 0) {
			snprintf(msg, msglen, "targets: '%s' is not an http(s) URL", c->targets[i]);
			return 1;
		}
	if (c->health_timeout > c->health_interval) {
		snprintf(msg, msglen, "health_timeout is longer than health_interval");
		return 1;
	}
	return 0;
}

/*
 * Spool key -> small value, open addressing with linear probing and backward-shift
 * deletion (no tombstones). Keys are spool sequence numbers, never 0. Grows by doubling:
 * the uplink threads call this, never a worker.
 */
struct kmap {
	uint64_t *keys;
	uint8_t *vals;
	size_t cap, n;
};

static inline size_t
slot_of(const struct kmap *m, uint64_t key)
{
	/* Fibonacci hashing: consecutive keys spread over the table. */
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 20) & (m->cap - 1);
}

static int
kmap_grow(struct kmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : MAP_MIN;
	struct kmap g = {.keys = calloc(cap, sizeof(uint64_t)), .vals = calloc(cap, 1), .cap = cap};

	if (g.keys == NULL || g.vals == NULL) {
		free(g.keys);
		free(g.vals);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;

		if (m->keys[i] == 0)
			continue;
		for (j = slot_of(&g, m->keys[i]); g.keys[j] != 0; j = (j + 1) & (cap - 1))
			;
		g.keys[j] = m->keys[i];
		g.vals[j] = m->vals[i];
	}
	g.n = m->n;
	free(m->keys);
	free(m->vals);
	*m = g;
	return 0;
}

/* @return the value's address, or NULL if absent. */
static uint8_t *
kmap_get(const struct kmap *m, uint64_t key)
{
	if (m->cap == 0)
		return NULL;
	for (size_t i = slot_of(m, key); m->keys[i] != 0; i = (i + 1) & (m->cap - 1))
		if (m->keys[i] == key)
			return &m->vals[i];
	return NULL;
}

static int
kmap_put(struct kmap *m, uint64_t key, uint8_t val)
{
	uint8_t *v = kmap_get(m, key);
	size_t i;

	if (v != NULL) {
		*v = val;
		return 0;
	}
	if ((m->n + 1) * 2 > m->cap && kmap_grow(m) < 0)
		return -ENOMEM;
	for (i = slot_of(m, key); m->keys[i] != 0; i = (i + 1) & (m->cap - 1))
		;
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
	return 0;
}

static void
kmap_del(struct kmap *m, uint64_t key)
{
	size_t i, j, mask = m->cap - 1;

	if (m->cap == 0)
		return;
	for (i = slot_of(m, key); m->keys[i] != key; i = (i + 1) & mask)
		if (m->keys[i] == 0)
			return;
	/* Backward shift: move later members of the run into the hole when their home
	 * slot does not lie cyclically between the hole and them. */
	for (j = (i + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
		size_t h = slot_of(m, m->keys[j]);

		if (((j - h) & mask) >= ((j - i) & mask)) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = 0;
	m->n--;
}

struct target {
	int state;
	uint64_t consecutive;
	uint64_t check_due;
	bool checking;
	struct tl_failover_target_stats st;
};

struct tl_failover {
	pthread_mutex_t mu;
	struct tl_failover_conf conf;
	unsigned n;
	unsigned preferred;
	uint64_t epoch;
	struct kmap claims; /* record -> claimant, until delivered */
	struct kmap masks;  /* ALL tables: record -> targets that delivered it */
	struct target t[TL_FAILOVER_MAX_TARGETS];
};

int
tl_failover_create(
        const struct tl_failover_conf *conf, unsigned n_targets, struct tl_failover **out)
{
	struct tl_failover *fo;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (conf == NULL || n_targets == 0 || n_targets > TL_FAILOVER_MAX_TARGETS ||
	        conf->failures == 0)
		return -EINVAL;
	for (int i = 0; i < TL_BATCH_TABLE_MAX; i++)
		if (conf->policy[i] != TL_FAILOVER_FIRST_HEALTHY &&
		        conf->policy[i] != TL_FAILOVER_ALL)
			return -EINVAL;
	fo = calloc(1, sizeof(*fo));
	if (fo == NULL)
		return -ENOMEM;
	pthread_mutex_init(&fo->mu, NULL);
	fo->conf = *conf;
	fo->n = n_targets;
	fo->epoch = 1;
	*out = fo;
	return 0;
}

void
tl_failover_free(struct tl_failover *fo)
{
	if (fo == NULL)
		return;
	pthread_mutex_destroy(&fo->mu);
	free(fo->claims.keys);
	free(fo->claims.vals);
	free(fo->masks.keys);
	free(fo->masks.vals);
	free(fo);
}

unsigned
tl_failover_targets(const struct tl_failover *fo)
{
	return fo ? fo->n : 1;
}

enum tl_failover_policy
tl_failover_policy(const struct tl_failover *fo, unsigned t)
{
	if (fo == NULL || t >= TL_BATCH_TABLE_MAX)
		return TL_FAILOVER_FIRST_HEALTHY;
	return (enum tl_failover_policy)fo->conf.policy[t];
}

bool
tl_failover_claims(const struct tl_failover *fo, unsigned t)
{
	return fo != NULL && fo->n > 1 && tl_failover_policy(fo, t) == TL_FAILOVER_FIRST_HEALTHY;
}

/* Under the lock: recompute the preferred target; a change is a new epoch. */
static void
repick(struct tl_failover *fo)
{
	unsigned p = 0;

	while (p < fo->n && fo->t[p].state == TL_FAILOVER_OPEN)
		p++;
	if (p == fo->n)
		p = 0;
	if (p != fo->preferred) {
		fo->preferred = p;
		fo->epoch++;
	}
}

unsigned
tl_failover_preferred(struct tl_failover *fo, uint64_t *epoch)
{
	unsigned p;

	if (fo == NULL) {
		if (epoch)
			*epoch = 1;
		return 0;
	}
	pthread_mutex_lock(&fo->mu);
	p = fo->preferred;
	if (epoch)
		*epoch = fo->epoch;
	pthread_mutex_unlock(&fo->mu);
	return p;
}

enum tl_failover_take
tl_failover_take(struct tl_failover *fo, unsigned target, unsigned t, uint64_t key, int owner,
        bool *new_claim)
{
	enum tl_failover_take r = TL_FAILOVER_SKIP;
	uint8_t *v;

	*new_claim = false;
	if (!tl_failover_claims(fo, t))
		return TL_FAILOVER_TAKE;
	if (owner >= 0)
		return (unsigned)owner == target ? TL_FAILOVER_TAKE : TL_FAILOVER_SKIP;
	pthread_mutex_lock(&fo->mu);
	v = kmap_get(&fo->claims, key);
	if (v != NULL) {
		r = *v == target ? TL_FAILOVER_TAKE : TL_FAILOVER_SKIP;
	} else if (fo->preferred == target && fo->t[target].state == TL_FAILOVER_CLOSED &&
	           kmap_put(&fo->claims, key, (uint8_t)target) == 0) {
		fo->t[target].st.claimed++;
		*new_claim = true;
		r = TL_FAILOVER_TAKE;
	}
	pthread_mutex_unlock(&fo->mu);
	return r;
}

void
tl_failover_unclaim(struct tl_failover *fo, unsigned target, uint64_t key)
{
	uint8_t *v;

	if (fo == NULL)
		return;
	pthread_mutex_lock(&fo->mu);
	v = kmap_get(&fo->claims, key);
	if (v != NULL && *v == target)
		kmap_del(&fo->claims, key);
	pthread_mutex_unlock(&fo->mu);
}

bool
tl_failover_delivered(struct tl_failover *fo, unsigned target, unsigned t, uint64_t key)
{
	uint8_t all, *v;
	bool done = true;

	if (fo == NULL || fo->n == 1)
		return true;
	pthread_mutex_lock(&fo->mu);
	if (tl_failover_policy(fo, t) == TL_FAILOVER_FIRST_HEALTHY) {
		kmap_del(&fo->claims, key);
	} else {
		all = (uint8_t)((1u << fo->n) - 1);
		v = kmap_get(&fo->masks, key);
		if (v == NULL) {
			/* Out of memory: keep the record (sent again after a restart, found
			 * there by the check every restart makes). */
			done = false;
			if (kmap_put(&fo->masks, key, (uint8_t)(1u << target)) < 0)
				goto out;
		} else {
			*v |= (uint8_t)(1u << target);
			done = *v == all;
			if (done)
				kmap_del(&fo->masks, key);
		}
	}
out:
	pthread_mutex_unlock(&fo->mu);
	return done;
}

void
tl_failover_report(struct tl_failover *fo, unsigned target, bool ok, uint64_t now_ns)
{
	struct target *tg;

	if (fo == NULL || target >= fo->n)
		return;
	pthread_mutex_lock(&fo->mu);
	tg = &fo->t[target];
	if (ok) {
		tg->consecutive = 0;
		tg->state = TL_FAILOVER_CLOSED;
	} else {
		tg->st.failures++;
		if (++tg->consecutive >= fo->conf.failures && tg->state == TL_FAILOVER_CLOSED) {
			tg->state = TL_FAILOVER_OPEN;
			tg->st.opened++;
			tg->check_due = now_ns + fo->conf.health_interval;
		}
	}
	repick(fo);
	pthread_mutex_unlock(&fo->mu);
}

bool
tl_failover_check_due(struct tl_failover *fo, unsigned target, uint64_t now_ns)
{
	bool due = false;

	if (fo == NULL || fo->n == 1 || target >= fo->n)
		return false;
	pthread_mutex_lock(&fo->mu);
	if (!fo->t[target].checking && now_ns >= fo->t[target].check_due) {
		fo->t[target].checking = true;
		due = true;
	}
	pthread_mutex_unlock(&fo->mu);
	return due;
}

void
tl_failover_checked(struct tl_failover *fo, unsigned target, bool ok, uint64_t now_ns)
{
	if (fo == NULL || target >= fo->n)
		return;
	pthread_mutex_lock(&fo->mu);
	fo->t[target].checking = false;
	fo->t[target].check_due = now_ns + fo->conf.health_interval;
	fo->t[target].st.checks++;
	fo->t[target].st.checks_failed += !ok;
	pthread_mutex_unlock(&fo->mu);
	tl_failover_report(fo, target, ok, now_ns);
}

bool
tl_failover_open(const struct tl_failover *cfo, unsigned target)
{
	struct tl_failover *fo = (struct tl_failover *)cfo; /* the lock, not the state */
	bool open;

	if (fo == NULL || target >= fo->n)
		return false;
	pthread_mutex_lock(&fo->mu);
	open = fo->t[target].state == TL_FAILOVER_OPEN;
	pthread_mutex_unlock(&fo->mu);
	return open;
}

void
tl_failover_stats(
        const struct tl_failover *cfo, unsigned target, struct tl_failover_target_stats *st)
{
	struct tl_failover *fo = (struct tl_failover *)cfo;

	memset(st, 0, sizeof(*st));
	if (fo == NULL || target >= fo->n)
		return;
	pthread_mutex_lock(&fo->mu);
	*st = fo->t[target].st;
	st->state = fo->t[target].state;
	pthread_mutex_unlock(&fo->mu);
}
