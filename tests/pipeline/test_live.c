/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Unit tests of pipeline/tl_live: building generations, publishing them under RCU while
 * workers classify, deferred frees when a worker does not report, and bad arguments.
 *
 * Real Hyperscan, no EAL (rte_rcu_qsbr is used on plain memory). The corpus is the
 * loghub Hadoop and Spark samples in ../shared/data. Two pattern sets alternate:
 * profile A = [hadoop.rm_contact, hadoop.fatal], profile B = [hadoop.fatal,
 * hadoop.retry_connect]: hadoop.fatal has a different index in each, so a worker that
 * mixed one generation's database with another's pattern table would report wrong ids.
 * The expected matches are computed with strstr(), independently of Hyperscan.
 *
 * The binary is linked with -Wl,--wrap=hs_alloc_scratch to fail one worker's scratch.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hs/hs.h>

#include "tl_classify.h"
#include "tl_error.h"
#include "tl_live.h"
#include "tl_schema.h"
#include "tl_test_schema.h"

#define COL_ERROR 8 /* e6data's `error` column (tl_test_e6data_def) */
#define N_WORKERS 2
#define N_PUBLISH 20
#define BURST 32
#define MAX_GEN 64

/* ---- Hyperscan wrapper ----------------------------------------------------------- */

hs_error_t __real_hs_alloc_scratch(const hs_database_t *db, hs_scratch_t **scratch);
hs_error_t __wrap_hs_alloc_scratch(const hs_database_t *db, hs_scratch_t **scratch);

static int scratch_fail_at = -1; /* fail the n-th call from now (0-based), -1: never */

hs_error_t
__wrap_hs_alloc_scratch(const hs_database_t *db, hs_scratch_t **scratch)
{
	if (scratch_fail_at == 0) {
		scratch_fail_at = -1;
		return HS_NOMEM;
	}
	if (scratch_fail_at > 0)
		scratch_fail_at--;
	return __real_hs_alloc_scratch(db, scratch);
}

/* ---- profiles ----------------------------------------------------------------------- */

struct profile {
	const char *name;
	const char *ids[2];     /* in pattern order */
	const char *needles[2]; /* what each regex matches (all plain literals) */
};

static const struct profile prof_a = {
        .name = "A",
        .ids = {"hadoop.rm_contact", "hadoop.fatal"},
        .needles = {"ERROR IN CONTACTING RM", " FATAL "},
};
static const struct profile prof_b = {
        .name = "B",
        .ids = {"hadoop.fatal", "hadoop.retry_connect"},
        .needles = {" FATAL ", "Retrying connect to server"},
};

static struct tl_schema *g_schema;
static struct tl_classify_conf g_conf;
static char g_err[4096];
static unsigned g_frees; /* generations whose ext was freed (ext_free hook) */

static void
count_free(void *ext)
{
	(void)ext;
	__atomic_fetch_add(&g_frees, 1, __ATOMIC_RELAXED);
}

static void
add_pattern(struct tl_classify_conf *c, const char *id, const char *regex)
{
	struct tl_classify_pattern_def *p = &c->patterns[c->n_patterns++];

	memset(p, 0, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "%s", id);
	snprintf(p->regex, sizeof(p->regex), "%s", regex);
	snprintf(p->category, sizeof(p->category), "network");
	p->severity = TL_CLASSIFY_SEV_ERROR - 1;
	p->effect = TL_CLASSIFY_EFFECT_ERROR;
}

/* g_conf: no cache, fields [error], no pattern. */
static struct tl_classify_conf *
conf_reset(void)
{
	memset(&g_conf, 0, sizeof(g_conf));
	snprintf(g_conf.fields[0], TL_SCHEMA_NAME_MAX, "error");
	g_conf.n_fields = 1;
	return &g_conf;
}

/* A generation of @p p for @p n_workers, its ext marking the profile. */
static struct tl_live_gen *
gen_of(const struct profile *p, unsigned n_workers)
{
	struct tl_classify_conf *c = conf_reset();
	struct tl_live_gen *g = NULL;
	int rc;

	for (int i = 0; i < 2; i++)
		add_pattern(c, p->ids[i], p->needles[i]); /* plain literals */
	rc = tl_live_gen_build(c, g_schema, n_workers, &g, g_err, sizeof(g_err));
	if (rc != 0)
		fail_msg("build %s: %s: %s", p->name, tl_strerror(rc), g_err);
	assert_non_null(g);
	assert_non_null(g->db);
	assert_int_equal(g->n_workers, n_workers);
	assert_string_equal(g->db_hash, tl_classify_db_hash(g->db));
	g->ext = (void *)p;
	g->ext_free = count_free;
	return g;
}

/* ---- corpus ------------------------------------------------------------------------- */

struct corpus {
	char *buf[2];
	const char **line;
	uint8_t *expect[2]; /* per profile: bit i = needles[i] occurs in the line */
	size_t n;
	size_t cap;
};

static struct corpus g_corpus;

static const char *
data_dir(void)
{
	const char *s = getenv("TAPLINE_DATA");

	return s && s[0] ? s : "../shared/data";
}

static void
corpus_add_file(struct corpus *c, int slot, const char *name)
{
	char path[1024];
	FILE *f;
	long size;

	snprintf(path, sizeof(path), "%s/loghub/%s", data_dir(), name);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s (set TAPLINE_DATA)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size > 0);
	rewind(f);
	c->buf[slot] = malloc((size_t)size + 1);
	assert_non_null(c->buf[slot]);
	assert_int_equal(fread(c->buf[slot], 1, (size_t)size, f), (size_t)size);
	fclose(f);
	c->buf[slot][size] = '\0';
	for (char *p = c->buf[slot]; *p != '\0';) {
		char *nl = strchr(p, '\n');

		if (c->n == c->cap) {
			c->cap = c->cap ? 2 * c->cap : 4096;
			c->line = realloc(c->line, c->cap * sizeof(*c->line));
			assert_non_null(c->line);
		}
		c->line[c->n++] = p;
		if (nl == NULL)
			break;
		*nl = '\0';
		if (nl > p && nl[-1] == '\r')
			nl[-1] = '\0';
		p = nl + 1;
	}
}

static unsigned
expect_of(const struct profile *p, const char *line)
{
	unsigned m = 0;

	for (int i = 0; i < 2; i++)
		if (strstr(line, p->needles[i]) != NULL)
			m |= 1u << i;
	return m;
}

static void
corpus_load(struct corpus *c)
{
	size_t n_a = 0, n_b = 0;

	memset(c, 0, sizeof(*c));
	corpus_add_file(c, 0, "Hadoop_2k.log");
	corpus_add_file(c, 1, "Spark_2k.log");
	c->expect[0] = calloc(c->n, 1);
	c->expect[1] = calloc(c->n, 1);
	assert_non_null(c->expect[0]);
	assert_non_null(c->expect[1]);
	for (size_t i = 0; i < c->n; i++) {
		c->expect[0][i] = (uint8_t)expect_of(&prof_a, c->line[i]);
		c->expect[1][i] = (uint8_t)expect_of(&prof_b, c->line[i]);
		n_a += c->expect[0][i] != 0;
		n_b += c->expect[1][i] != 0;
	}
	/* The corpus must tell the profiles apart, or the test proves nothing. */
	assert_true(c->n >= 3999);
	assert_true(n_a > 100);
	assert_true(n_b > 100);
}

static void
corpus_free(struct corpus *c)
{
	free(c->buf[0]);
	free(c->buf[1]);
	free(c->line);
	free(c->expect[0]);
	free(c->expect[1]);
	memset(c, 0, sizeof(*c));
}

/* Bit mask of the profile's patterns that @p r reports, per @p db; 0x80 if an id is
 * unknown to the profile. */
static unsigned
got_mask(const struct tl_classify_db *db, const struct profile *p,
        const struct tl_classify_result *r)
{
	unsigned m = 0;

	for (unsigned k = 0; k < r->n; k++) {
		const struct tl_classify_pattern *pat = tl_classify_db_pattern(db, r->ids[k]);
		int bit = -1;

		for (int i = 0; pat != NULL && i < 2; i++)
			if (strcmp(pat->id, p->ids[i]) == 0)
				bit = i;
		m |= bit < 0 ? 0x80u : 1u << bit;
	}
	return m;
}

/* ---- workers ------------------------------------------------------------------------ */

struct worker {
	pthread_t th;
	unsigned id;
	struct tl_live *live;
	uint64_t iterations; /* full passes over the corpus (written by the worker) */
	uint64_t events;
	uint64_t mismatches;
	uint64_t scan_failed;
	uint64_t last_gen; /* atomic: read by the main thread */
	bool backwards;    /* saw a generation older than a previous one */
	uint64_t bursts_per_gen[MAX_GEN];
	char first_mismatch[256];
	struct tl_event *ev; /* the worker's event, allocated by the main thread */
};

static bool g_stop;

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct tl_event *ev = w->ev;
	uint64_t last = 0;

	tl_live_worker_online(w->live, w->id);
	while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
		for (size_t b = 0; b < g_corpus.n; b += BURST) {
			const struct tl_live_gen *g = tl_live_current(w->live);
			const struct profile *p = g->ext;
			const uint8_t *expect = g_corpus.expect[p == &prof_a ? 0 : 1];
			size_t end = b + BURST < g_corpus.n ? b + BURST : g_corpus.n;

			if (g->gen < last)
				w->backwards = true;
			last = g->gen;
			if (g->gen < MAX_GEN)
				w->bursts_per_gen[g->gen]++;
			for (size_t i = b; i < end; i++) {
				struct tl_classify_result r;
				unsigned got;

				ev->col[COL_ERROR].kind = TL_VAL_STRING;
				ev->col[COL_ERROR].ptr = (const uint8_t *)g_corpus.line[i];
				ev->col[COL_ERROR].len = (uint32_t)strlen(g_corpus.line[i]);
				ev->raw = ev->col[COL_ERROR].ptr;
				ev->raw_len = ev->col[COL_ERROR].len;
				tl_classify_event(g->db, g->scratch[w->id], ev, &r);
				w->events++;
				if (r.scan_failed)
					w->scan_failed++;
				got = got_mask(g->db, p, &r);
				if (got != expect[i] || r.error != (expect[i] != 0)) {
					if (w->mismatches++ == 0)
						snprintf(w->first_mismatch,
						        sizeof(w->first_mismatch),
						        "gen %llu profile %s line %zu: got %#x "
						        "want %#x",
						        (unsigned long long)g->gen, p->name, i, got,
						        expect[i]);
				}
			}
			/* Published after the burst: the main thread waits for this to know
			 * the worker has classified with generation `last`. */
			__atomic_store_n(&w->last_gen, last, __ATOMIC_RELEASE);
			tl_live_quiescent(w->live, w->id);
		}
		__atomic_store_n(&w->iterations, w->iterations + 1, __ATOMIC_RELEASE);
	}
	tl_live_worker_offline(w->live, w->id);
	return NULL;
}

/* Spin (yielding) until every worker has finished a burst with generation @p gen. */
static void
wait_workers_at(struct worker *w, unsigned n, uint64_t gen)
{
	for (unsigned i = 0; i < n; i++)
		while (__atomic_load_n(&w[i].last_gen, __ATOMIC_ACQUIRE) < gen)
			sched_yield();
}

/* ---- fixtures ----------------------------------------------------------------------- */

static int
group_setup(void **state)
{
	struct tl_schema_def def;
	struct tl_limits lim = tl_test_e6data_limits();
	char msg[256];

	(void)state;
	tl_test_e6data_def(&def);
	if (tl_schema_compile(&def, &lim, &g_schema, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "schema: %s\n", msg);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	tl_schema_free(g_schema);
	return 0;
}

static int
test_setup(void **state)
{
	(void)state;
	g_frees = 0;
	g_stop = false;
	scratch_fail_at = -1;
	g_err[0] = '\0';
	return 0;
}

/* ---- building generations ------------------------------------------------------------ */

static void
test_gen_build_profiles_classify_as_expected(void **state)
{
	struct tl_live_gen *a, *b;
	struct tl_event ev;
	struct tl_classify_result r;
	const char *rm = NULL, *retry = NULL;

	(void)state;
	corpus_load(&g_corpus);
	for (size_t i = 0; i < g_corpus.n && (rm == NULL || retry == NULL); i++) {
		if (rm == NULL && g_corpus.expect[0][i] == 1 && g_corpus.expect[1][i] == 0)
			rm = g_corpus.line[i];
		if (retry == NULL && g_corpus.expect[1][i] == 2)
			retry = g_corpus.line[i];
	}
	assert_non_null(rm);
	assert_non_null(retry);
	a = gen_of(&prof_a, 3);
	b = gen_of(&prof_b, 1);
	assert_string_not_equal(a->db_hash, b->db_hash);
	assert_int_equal(tl_classify_db_find(a->db, "hadoop.fatal"), 1);
	assert_int_equal(tl_classify_db_find(b->db, "hadoop.fatal"), 0);

	memset(&ev, 0, sizeof(ev));
	ev.col[COL_ERROR].kind = TL_VAL_STRING;
	ev.col[COL_ERROR].ptr = (const uint8_t *)rm;
	ev.col[COL_ERROR].len = (uint32_t)strlen(rm);
	tl_classify_event(a->db, a->scratch[2], &ev, &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ids[0], 0);
	assert_true(r.error);
	tl_classify_event(b->db, b->scratch[0], &ev, &r);
	assert_int_equal(r.n, 0);
	ev.col[COL_ERROR].ptr = (const uint8_t *)retry;
	ev.col[COL_ERROR].len = (uint32_t)strlen(retry);
	tl_classify_event(b->db, b->scratch[0], &ev, &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ids[0], 1);

	tl_live_gen_free(a);
	tl_live_gen_free(b);
	assert_int_equal(g_frees, 2);
	corpus_free(&g_corpus);
}

static void
test_gen_build_no_patterns_empty_db(void **state)
{
	struct tl_live_gen *g = NULL;
	struct tl_event ev;
	struct tl_classify_result r;

	(void)state;
	assert_int_equal(tl_live_gen_build(conf_reset(), g_schema, 2, &g, g_err, sizeof(g_err)), 0);
	assert_non_null(g);
	assert_non_null(g->db);
	assert_int_equal(tl_classify_db_count(g->db), 0);
	assert_non_null(g->scratch[0]);
	assert_non_null(g->scratch[1]);
	assert_null(g->scratch[2]);
	memset(&ev, 0, sizeof(ev));
	ev.col[COL_ERROR].kind = TL_VAL_STRING;
	ev.col[COL_ERROR].ptr = (const uint8_t *)"FATAL";
	ev.col[COL_ERROR].len = 5;
	tl_classify_event(g->db, g->scratch[1], &ev, &r);
	assert_int_equal(r.n, 0);
	assert_false(r.error);
	tl_live_gen_free(g);
}

static void
test_gen_build_bad_regex_fails_with_pattern_id(void **state)
{
	struct tl_classify_conf *c = conf_reset();
	struct tl_live_gen *g = (struct tl_live_gen *)&g;

	(void)state;
	add_pattern(c, "hadoop.fatal", " FATAL ");
	add_pattern(c, "bad.regex", "(unclosed");
	assert_int_equal(tl_live_gen_build(c, g_schema, 2, &g, g_err, sizeof(g_err)), TL_E_CONFIG);
	assert_null(g);
	if (strstr(g_err, "pattern 'bad.regex': ") == NULL)
		fail_msg("error text: %s", g_err);
	assert_null(strstr(g_err, "hadoop.fatal"));
}

static void
test_gen_build_scratch_failure_frees_all(void **state)
{
	struct tl_classify_conf *c = conf_reset();
	struct tl_live_gen *g = (struct tl_live_gen *)&g;

	(void)state;
	add_pattern(c, "hadoop.fatal", " FATAL ");
	scratch_fail_at = 1; /* worker 0's scratch succeeds, worker 1's fails */
	assert_int_equal(tl_live_gen_build(c, g_schema, 3, &g, g_err, sizeof(g_err)), -ENOMEM);
	assert_null(g);
	if (strstr(g_err, "scratch of worker 1") == NULL)
		fail_msg("error text: %s", g_err);
	/* ASan's leak check proves worker 0's scratch and the database were freed. */
}

static void
test_gen_build_bad_args_einval(void **state)
{
	struct tl_live_gen *g = (struct tl_live_gen *)&g;

	(void)state;
	strcpy(g_err, "stale");
	assert_int_equal(tl_live_gen_build(NULL, g_schema, 1, &g, g_err, sizeof(g_err)), -EINVAL);
	assert_null(g);
	assert_string_equal(g_err, "");
	g = (struct tl_live_gen *)&g;
	assert_int_equal(tl_live_gen_build(conf_reset(), NULL, 1, &g, NULL, 0), -EINVAL);
	assert_null(g);
	assert_int_equal(tl_live_gen_build(conf_reset(), g_schema, 0, &g, NULL, 0), -EINVAL);
	assert_int_equal(
	        tl_live_gen_build(conf_reset(), g_schema, TL_LIVE_MAX_WORKERS + 1, &g, NULL, 0),
	        -EINVAL);
	assert_int_equal(tl_live_gen_build(conf_reset(), g_schema, 1, NULL, NULL, 0), -EINVAL);
	tl_live_gen_free(NULL);
}

/* ---- creating and publishing ----------------------------------------------------------- */

static void
test_create_bad_args_einval(void **state)
{
	struct tl_live_gen *g1 = gen_of(&prof_a, 1);
	struct tl_live *live = (struct tl_live *)&live;

	(void)state;
	assert_int_equal(tl_live_create(1, NULL, &live), -EINVAL);
	assert_null(live);
	assert_int_equal(tl_live_create(0, g1, &live), -EINVAL);
	assert_int_equal(tl_live_create(TL_LIVE_MAX_WORKERS + 1, g1, &live), -EINVAL);
	assert_int_equal(tl_live_create(2, g1, &live), -EINVAL); /* g1 has one scratch */
	assert_int_equal(tl_live_create(1, g1, NULL), -EINVAL);
	assert_null(live);
	/* Still the caller's after every failure. */
	assert_int_equal(g_frees, 0);
	tl_live_gen_free(g1);
	tl_live_destroy(NULL);
	assert_int_equal(tl_live_reclaim(NULL), 0);
	tl_live_note_failure(NULL);
	tl_live_stats(NULL, NULL);
}

static void
test_publish_bad_args_einval(void **state)
{
	struct tl_live_gen *g1 = gen_of(&prof_a, 2), *small = gen_of(&prof_b, 1);
	struct tl_live *live = NULL;
	struct tl_live_stats st;

	(void)state;
	assert_int_equal(tl_live_create(2, g1, &live), 0);
	assert_int_equal(tl_live_publish(NULL, small, 0), -EINVAL);
	assert_int_equal(tl_live_publish(live, NULL, 0), -EINVAL);
	assert_int_equal(tl_live_publish(live, g1, 0), -EINVAL);    /* already current */
	assert_int_equal(tl_live_publish(live, small, 0), -EINVAL); /* one scratch, 2 workers */
	tl_live_stats(live, &st);
	assert_int_equal(st.generation, 1);
	assert_int_equal(st.reloads_ok, 0);
	assert_int_equal(g_frees, 0);
	tl_live_gen_free(small);
	tl_live_destroy(live);
	assert_int_equal(g_frees, 2);
}

static void
test_publish_offline_workers_frees_old_at_once(void **state)
{
	struct tl_live *live = NULL;
	struct tl_live_stats st;

	(void)state;
	assert_int_equal(tl_live_create(N_WORKERS, gen_of(&prof_a, N_WORKERS), &live), 0);
	assert_int_equal(tl_live_current(live)->gen, 1);
	/* Worker 0 was online and went offline; worker 1 never came online. Neither may
	 * be waited for: with a 60 s timeout a wait would show as a deferred free. */
	tl_live_worker_online(live, 0);
	tl_live_worker_offline(live, 0);
	assert_int_equal(tl_live_publish(live, gen_of(&prof_b, N_WORKERS), 60000000000ull), 0);
	assert_int_equal(g_frees, 1);
	tl_live_stats(live, &st);
	assert_int_equal(st.generation, 2);
	assert_int_equal(st.reloads_ok, 1);
	assert_int_equal(st.gens_pending_free, 0);
	assert_int_equal(st.publish_timeouts, 0);
	assert_int_equal(tl_live_current(live)->gen, 2);
	assert_ptr_equal(tl_live_current(live)->ext, &prof_b);
	/* Timeout 0 checks once: still immediate with nobody online. */
	assert_int_equal(tl_live_publish(live, gen_of(&prof_a, N_WORKERS), 0), 0);
	assert_int_equal(g_frees, 2);
	tl_live_note_failure(live);
	tl_live_stats(live, &st);
	assert_int_equal(st.generation, 3);
	assert_int_equal(st.reloads_ok, 2);
	assert_int_equal(st.reloads_failed, 1);
	tl_live_destroy(live);
	assert_int_equal(g_frees, 3);
}

static void
test_publish_stuck_worker_defers_free(void **state)
{
	struct tl_live *live = NULL;
	struct tl_live_gen *g2;
	struct tl_live_stats st;

	(void)state;
	assert_int_equal(tl_live_create(N_WORKERS, gen_of(&prof_a, N_WORKERS), &live), 0);
	/* This thread plays worker 1: online, holding generation 1, never reporting. */
	tl_live_worker_online(live, 1);
	assert_int_equal(tl_live_current(live)->gen, 1);
	g2 = gen_of(&prof_b, N_WORKERS);
	assert_int_equal(tl_live_publish(live, g2, 20000000ull), 0);
	assert_int_equal(g_frees, 0); /* generation 1 may still be in use */
	tl_live_stats(live, &st);
	assert_int_equal(st.generation, 2);
	assert_int_equal(st.gens_pending_free, 1);
	assert_int_equal(st.publish_timeouts, 1);
	assert_int_equal(tl_live_reclaim(live), 0);
	assert_int_equal(g_frees, 0);

	/* The worker reports: the deferred generation can go. */
	tl_live_quiescent(live, 1);
	assert_int_equal(tl_live_reclaim(live), 1);
	assert_int_equal(g_frees, 1);
	tl_live_stats(live, &st);
	assert_int_equal(st.gens_pending_free, 0);

	/* Stuck again (never reports past the next token): republishing a deferred or
	 * current generation is refused, destroy frees what is left. */
	assert_int_equal(tl_live_publish(live, gen_of(&prof_a, N_WORKERS), 0), 0);
	tl_live_stats(live, &st);
	assert_int_equal(st.gens_pending_free, 1);
	assert_int_equal(st.publish_timeouts, 2);
	assert_int_equal(tl_live_publish(live, g2, 0), -EINVAL); /* deferred */
	assert_int_equal(g_frees, 1);
	tl_live_worker_offline(live, 1);
	tl_live_destroy(live);
	assert_int_equal(g_frees, 3);
}

static void
test_publish_destroy_frees_deferred_of_stuck_worker(void **state)
{
	struct tl_live *live = NULL;

	(void)state;
	assert_int_equal(tl_live_create(1, gen_of(&prof_a, 1), &live), 0);
	tl_live_worker_online(live, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(tl_live_publish(live, gen_of(i % 2 ? &prof_a : &prof_b, 1), 0), 0);
	assert_int_equal(g_frees, 0);
	/* The worker never reported and is still "online": destroy frees everything
	 * anyway (its precondition) and says so in the log. */
	tl_live_destroy(live);
	assert_int_equal(g_frees, 4);
}

static void
test_publish_twenty_while_workers_scan_consistent(void **state)
{
	struct worker w[N_WORKERS];
	struct tl_live *live = NULL;
	struct tl_live_stats st;
	uint64_t it[N_WORKERS];

	(void)state;
	corpus_load(&g_corpus);
	assert_int_equal(tl_live_create(N_WORKERS, gen_of(&prof_a, N_WORKERS), &live), 0);
	memset(w, 0, sizeof(w));
	for (unsigned i = 0; i < N_WORKERS; i++) {
		w[i].id = i;
		w[i].live = live;
		w[i].ev = calloc(1, sizeof(*w[i].ev));
		assert_non_null(w[i].ev);
		assert_int_equal(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
	}
	wait_workers_at(w, N_WORKERS, 1);
	for (unsigned k = 1; k <= N_PUBLISH; k++) {
		struct tl_live_gen *g = gen_of(k % 2 ? &prof_b : &prof_a, N_WORKERS);

		/* A generous timeout: the workers report every burst, so it is never
		 * reached unless the implementation is broken (then frees fall short). */
		assert_int_equal(tl_live_publish(live, g, 30000000000ull), 0);
		assert_int_equal(__atomic_load_n(&g_frees, __ATOMIC_RELAXED), k);
		/* Both workers classify with the new generation before the next one. */
		wait_workers_at(w, N_WORKERS, k + 1);
	}
	/* One more full pass over the corpus each, then stop at a pass boundary. */
	for (unsigned i = 0; i < N_WORKERS; i++)
		it[i] = __atomic_load_n(&w[i].iterations, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < N_WORKERS; i++)
		while (__atomic_load_n(&w[i].iterations, __ATOMIC_ACQUIRE) < it[i] + 2)
			sched_yield();
	__atomic_store_n(&g_stop, true, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < N_WORKERS; i++) {
		assert_int_equal(pthread_join(w[i].th, NULL), 0);
		free(w[i].ev);
	}

	for (unsigned i = 0; i < N_WORKERS; i++) {
		if (w[i].mismatches != 0)
			fail_msg("worker %u: %llu mismatches, first: %s", i,
			        (unsigned long long)w[i].mismatches, w[i].first_mismatch);
		assert_int_equal(w[i].scan_failed, 0);
		assert_false(w[i].backwards);
		assert_true(w[i].iterations >= 2);
		/* Every event of every pass classified exactly once. */
		assert_int_equal(w[i].events, w[i].iterations * g_corpus.n);
		for (unsigned k = 1; k <= N_PUBLISH + 1; k++)
			if (w[i].bursts_per_gen[k] == 0)
				fail_msg("worker %u never used generation %u", i, k);
		assert_int_equal(w[i].bursts_per_gen[N_PUBLISH + 2], 0);
	}
	tl_live_stats(live, &st);
	assert_int_equal(st.generation, N_PUBLISH + 1);
	assert_int_equal(st.reloads_ok, N_PUBLISH);
	assert_int_equal(st.gens_pending_free, 0);
	assert_int_equal(st.publish_timeouts, 0);
	assert_int_equal(g_frees, N_PUBLISH);
	tl_live_destroy(live);
	assert_int_equal(g_frees, N_PUBLISH + 1);
	corpus_free(&g_corpus);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup(test_gen_build_profiles_classify_as_expected, test_setup),
	        cmocka_unit_test_setup(test_gen_build_no_patterns_empty_db, test_setup),
	        cmocka_unit_test_setup(test_gen_build_bad_regex_fails_with_pattern_id, test_setup),
	        cmocka_unit_test_setup(test_gen_build_scratch_failure_frees_all, test_setup),
	        cmocka_unit_test_setup(test_gen_build_bad_args_einval, test_setup),
	        cmocka_unit_test_setup(test_create_bad_args_einval, test_setup),
	        cmocka_unit_test_setup(test_publish_bad_args_einval, test_setup),
	        cmocka_unit_test_setup(test_publish_offline_workers_frees_old_at_once, test_setup),
	        cmocka_unit_test_setup(test_publish_stuck_worker_defers_free, test_setup),
	        cmocka_unit_test_setup(
	                test_publish_destroy_frees_deferred_of_stuck_worker, test_setup),
	        cmocka_unit_test_setup(
	                test_publish_twenty_while_workers_scan_consistent, test_setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
