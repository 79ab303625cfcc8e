/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Unit tests of app/tl_reload: live reload of a profile by file change (write a temporary
 * file, rename it over the profile, as editors and configuration managers do), by a
 * request from a real SIGHUP handler, and by a change of a file the profile extends;
 * rejections (bad regex, broken YAML, a section that needs a restart, a prepare hook
 * saying no) keep the running generation; 20 reloads while two workers classify lose
 * no event and free every generation.
 *
 * Profiles are written to a temporary folder and extend the shipped e6data-qpe profile
 * (found through TAPLINE_PROFILE_PATH). The corpus is loghub's Hadoop sample in
 * ../shared/data. Waits are on the controller's attempt counter (tl_reload_wait), never
 * on time.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tl_app.h"
#include "tl_classify.h"
#include "tl_error.h"
#include "tl_live.h"
#include "tl_reload.h"

#define N_WORKERS 2
#define N_RELOADS 20
#define BURST 32
#define MAX_GEN 64
#define WAIT_NS 60000000000ull /* a bound for a hung test, not a timing assertion */

#define PAT_A                                                                                      \
	"    - id: hadoop.rm_contact\n"                                                            \
	"      regex: 'ERROR IN CONTACTING RM'\n"                                                  \
	"      category: network\n"                                                                \
	"      severity: error\n"                                                                  \
	"      effect: error\n"
#define PAT_B                                                                                      \
	"    - id: hadoop.retry_connect\n"                                                         \
	"      regex: 'Retrying connect to server'\n"                                              \
	"      category: network\n"                                                                \
	"      severity: warning\n"                                                                \
	"      effect: tag\n"
#define PAT_BAD                                                                                    \
	"    - id: bad.regex\n"                                                                    \
	"      regex: '(unclosed'\n"                                                               \
	"      category: network\n"

#define COL_ERROR 8 /* e6data's `error` column */

static const char *const NEEDLE_A = "ERROR IN CONTACTING RM";
static const char *const NEEDLE_B = "Retrying connect to server";

/* ---- fixture ---------------------------------------------------------------------------- */

struct fx {
	char dir[256];
	char profile[PATH_MAX];
	struct tl_app_config *cfg;
	struct tl_schema *schema;
	struct tl_live *live;
	struct tl_reload *ctl;
	struct tl_reload_status st;
};

static struct fx g;
static unsigned g_frees;
static unsigned g_publishes;
static uint64_t g_published_gen;
static bool g_prepare_reject;
static struct tl_reload *volatile g_sig_ctl;

static void
count_free(void *ext)
{
	(void)ext;
	__atomic_fetch_add(&g_frees, 1, __ATOMIC_RELAXED);
}

static int
prepare(void *arg, const struct tl_app_config *cfg, struct tl_live_gen *gen, char *err,
        size_t errlen)
{
	(void)arg;
	(void)cfg;
	if (g_prepare_reject) {
		snprintf(err, errlen, "routing: tenant 'nobody' has no database");
		return TL_E_CONFIG;
	}
	gen->ext = &g; /* any non-NULL marker: ext_free counts the frees */
	gen->ext_free = count_free;
	return 0;
}

static void
on_publish(void *arg, const struct tl_live_gen *gen)
{
	(void)arg;
	g_publishes++;
	g_published_gen = gen->gen;
}

static void
on_sighup(int sig)
{
	(void)sig;
	tl_reload_request(g_sig_ctl);
}

/* Write @p text to @p dir/@p name through a temporary file and rename(). */
static void
write_file(const char *dir, const char *name, const char *text)
{
	char tmp[PATH_MAX + 32], path[PATH_MAX + 32];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(tmp, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

/* A profile extending @p parent with @p patterns and @p extra top-level text. */
static void
write_profile(const char *name, const char *parent, const char *patterns, const char *extra)
{
	char text[8192];

	snprintf(text, sizeof(text),
	        "extends: %s\n"
	        "name: reload-test\n"
	        "classify:\n"
	        "  cache_dir: '%s/hscache'\n"
	        "  patterns:\n"
	        "%s"
	        "%s",
	        parent, g.dir, patterns, extra);
	write_file(g.dir, name, text);
}

static const char *
data_dir(void)
{
	const char *s = getenv("TAPLINE_DATA");

	return s && s[0] ? s : "../shared/data";
}

static int
group_setup(void **state)
{
	(void)state;
	/* `extends: e6data-qpe` is found through TAPLINE_PROFILE_PATH (set by meson). */
	if (getenv("TAPLINE_PROFILE_PATH") == NULL) {
		const char *src = getenv("TAPLINE_SRC");
		char p[PATH_MAX];

		snprintf(p, sizeof(p), "%s/config/profiles", src ? src : ".");
		setenv("TAPLINE_PROFILE_PATH", p, 1);
	}
	signal(SIGHUP, on_sighup);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	signal(SIGHUP, SIG_DFL);
	return 0;
}

/* Load g.profile, build generation 1, create the live (no controller yet). */
static void
start_live(void)
{
	struct tl_live_gen *gen = NULL;
	char err[1024];
	int rc;

	g.cfg = malloc(sizeof(*g.cfg));
	assert_non_null(g.cfg);
	rc = tl_app_load(g.profile, g.cfg, &g.schema, stderr);
	assert_int_equal(rc, 0);
	rc = tl_live_gen_build(&g.cfg->classify, g.schema, N_WORKERS, &gen, err, sizeof(err));
	if (rc != 0)
		fail_msg("build: %s", err);
	gen->ext = &g;
	gen->ext_free = count_free;
	assert_int_equal(tl_live_create(N_WORKERS, gen, &g.live), 0);
}

static void
start_ctl(bool watch)
{
	struct tl_reload_conf conf = {
	        .profile = g.profile,
	        .loaded = g.cfg,
	        .schema = g.schema,
	        .live = g.live,
	        .no_watch = !watch,
	        .prepare = prepare,
	        .on_publish = on_publish,
	};

	assert_int_equal(tl_reload_create(&conf, &g.ctl), 0);
	g_sig_ctl = g.ctl;
	tl_reload_status(g.ctl, &g.st);
	assert_int_equal(g.st.attempts, 0);
	assert_int_equal(g.st.generation, 1);
}

static int
test_setup(void **state)
{
	(void)state;
	memset(&g, 0, sizeof(g));
	g_frees = 0;
	g_publishes = 0;
	g_published_gen = 0;
	g_prepare_reject = false;
	snprintf(g.dir, sizeof(g.dir), "/tmp/tl_reload_XXXXXX");
	if (mkdtemp(g.dir) == NULL)
		return -1;
	snprintf(g.profile, sizeof(g.profile), "%s/p.yaml", g.dir);
	write_profile("p.yaml", "e6data-qpe", PAT_A, "");
	start_live();
	return 0;
}

static int
test_teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	g_sig_ctl = NULL;
	tl_reload_destroy(g.ctl);
	tl_live_destroy(g.live);
	tl_schema_free(g.schema);
	free(g.cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g.dir);
	if (system(cmd) != 0)
		return -1;
	return 0;
}

/* Wait for the next attempt; g.st is the status after it. */
static void
next_attempt(void)
{
	uint64_t seen = g.st.attempts;

	assert_int_equal(tl_reload_wait(g.ctl, seen, WAIT_NS, &g.st), 0);
	assert_int_equal(g.st.attempts, seen + 1);
}

/* The current generation (this thread is no worker: valid until the next publish, which
 * only happens on a trigger this test makes). */
static const struct tl_live_gen *
current(void)
{
	return tl_live_current(g.live);
}

/* Classify @p line as the `error` value with the current generation's worker-0 scratch. */
static void
classify(const char *line, struct tl_classify_result *r)
{
	const struct tl_live_gen *gen = current();
	struct tl_event *ev = calloc(1, sizeof(*ev));

	assert_non_null(ev);
	ev->col[COL_ERROR].kind = TL_VAL_STRING;
	ev->col[COL_ERROR].ptr = (const uint8_t *)line;
	ev->col[COL_ERROR].len = (uint32_t)strlen(line);
	tl_classify_event(gen->db, gen->scratch[0], ev, r);
	free(ev);
}

static const char LINE_A[] = "2015-10-18 18:05:45,397 ERROR [RMCommunicator Allocator] "
                             "org.apache.hadoop.mapreduce.v2.app.rm.RMContainerAllocator: "
                             "ERROR IN CONTACTING RM.";
static const char LINE_B[] = "2015-10-18 18:06:03,856 INFO [RMCommunicator Allocator] "
                             "org.apache.hadoop.ipc.Client: Retrying connect to server: "
                             "msra-sa-41:8030. Already tried 0 time(s); retry policy is "
                             "RetryUpToMaximumCountWithFixedSleep(maxRetries=10, "
                             "sleepTime=1000 MILLISECONDS)";

static void
expect_profile_a(void)
{
	struct tl_classify_result r;

	assert_true(tl_classify_db_find(current()->db, "hadoop.rm_contact") >= 0);
	assert_int_equal(tl_classify_db_find(current()->db, "hadoop.retry_connect"), -1);
	classify(LINE_A, &r);
	assert_int_equal(r.n, 1);
	assert_true(r.error);
	classify(LINE_B, &r);
	assert_int_equal(r.n, 0);
}

static void
expect_profile_b(void)
{
	struct tl_classify_result r;

	assert_true(tl_classify_db_find(current()->db, "hadoop.retry_connect") >= 0);
	assert_int_equal(tl_classify_db_find(current()->db, "hadoop.rm_contact"), -1);
	classify(LINE_B, &r);
	assert_int_equal(r.n, 1);
	assert_false(r.error); /* effect: tag */
	assert_int_equal(r.severity, TL_CLASSIFY_SEV_WARNING);
	classify(LINE_A, &r);
	assert_int_equal(r.n, 0);
}

static void
expect_error_has(const char *needle)
{
	if (strstr(g.st.last_error, needle) == NULL)
		fail_msg("expected \"%s\" in the last error:\n%s", needle, g.st.last_error);
}

/* ---- reloads -------------------------------------------------------------------------------- */

static void
test_reload_file_renamed_new_patterns_published(void **state)
{
	(void)state;
	start_ctl(true);
	assert_int_equal(g.st.watched_files, 2); /* p.yaml and e6data-qpe.yaml */
	expect_profile_a();
	write_profile("p.yaml", "e6data-qpe", PAT_B, "");
	next_attempt();
	assert_int_equal(g.st.reloads_ok, 1);
	assert_int_equal(g.st.reloads_failed, 0);
	assert_false(g.st.last_failed);
	assert_int_equal(g.st.last_rc, 0);
	assert_true(g.st.last_ok_unix_ns > 0);
	assert_true(g.st.last_duration_ns > 0);
	assert_int_equal(g.st.generation, 2);
	assert_int_equal(current()->gen, 2);
	assert_string_equal(current()->path, g.profile);
	assert_string_equal(current()->db_hash, tl_classify_db_hash(current()->db));
	assert_int_equal(g_publishes, 1);
	assert_int_equal(g_published_gen, 2);
	assert_int_equal(g_frees, 1); /* no worker online: generation 1 freed at once */
	expect_profile_b();
}

static void
test_reload_bad_regex_rejected_old_kept(void **state)
{
	struct tl_live_stats ls;
	char want[PATH_MAX + 64];

	(void)state;
	start_ctl(true);
	write_profile("p.yaml", "e6data-qpe", PAT_A PAT_BAD, "");
	next_attempt();
	assert_int_equal(g.st.reloads_ok, 0);
	assert_int_equal(g.st.reloads_failed, 1);
	assert_true(g.st.last_failed);
	assert_int_equal(g.st.last_rc, TL_E_CONFIG);
	/* The file and line of the bad pattern's `-` entry (line 11: after PAT_A). */
	snprintf(want, sizeof(want), "%s:11: pattern 'bad.regex': ", g.profile);
	expect_error_has(want);
	assert_null(strstr(g.st.last_error, "rm_contact"));
	assert_int_equal(g.st.generation, 1);
	assert_int_equal(current()->gen, 1);
	expect_profile_a();
	tl_live_stats(g.live, &ls);
	assert_int_equal(ls.reloads_failed, 1);
	assert_int_equal(ls.reloads_ok, 0);
	assert_int_equal(g_publishes, 0);
	assert_int_equal(g_frees, 0);

	/* Fixed: the next change goes through and clears last_failed. */
	write_profile("p.yaml", "e6data-qpe", PAT_B, "");
	next_attempt();
	assert_false(g.st.last_failed);
	assert_int_equal(g.st.generation, 2);
	expect_profile_b();
}

static void
test_reload_frozen_sections_restart_needed(void **state)
{
	char want[PATH_MAX + 64];

	(void)state;
	start_ctl(true);
	write_profile("p.yaml", "e6data-qpe", PAT_B,
	        "schema:\n  id_column: event_type\ncapture:\n  workers: 3\n");
	next_attempt();
	assert_int_equal(g.st.reloads_failed, 1);
	assert_int_equal(g.st.last_rc, TL_E_CONFIG);
	snprintf(want, sizeof(want), "%s: section 'schema' changed: restart needed", g.profile);
	expect_error_has(want);
	snprintf(want, sizeof(want), "%s: section 'capture' changed: restart needed", g.profile);
	expect_error_has(want);
	assert_null(strstr(g.st.last_error, "'uplink'"));
	assert_int_equal(g.st.generation, 1);
	expect_profile_a(); /* the new patterns were not taken either */

	/* name and description do reload live. */
	write_profile("p.yaml", "e6data-qpe", PAT_B, "description: renamed live\n");
	next_attempt();
	assert_false(g.st.last_failed);
	assert_int_equal(g.st.generation, 2);
}

static void
test_reload_broken_yaml_rejected_with_location(void **state)
{
	char want[PATH_MAX + 64];

	(void)state;
	start_ctl(true);
	write_file(g.dir, "p.yaml", "extends: e6data-qpe\nclassify: [unclosed\n");
	next_attempt();
	assert_int_equal(g.st.reloads_failed, 1);
	assert_true(g.st.last_rc < 0);
	snprintf(want, sizeof(want), "%s:", g.profile);
	expect_error_has(want);
	assert_int_equal(g.st.generation, 1);
	expect_profile_a();
}

static void
test_reload_prepare_rejects_old_kept(void **state)
{
	(void)state;
	start_ctl(true);
	g_prepare_reject = true;
	write_profile("p.yaml", "e6data-qpe", PAT_B, "");
	next_attempt();
	assert_int_equal(g.st.reloads_failed, 1);
	assert_int_equal(g.st.last_rc, TL_E_CONFIG);
	expect_error_has("routing: tenant 'nobody' has no database");
	assert_int_equal(g.st.generation, 1);
	assert_int_equal(g_frees, 0); /* the rejected generation had no ext yet */
	expect_profile_a();
}

static void
test_reload_sighup_rebuilds_unchanged_file_skipped(void **state)
{
	(void)state;
	start_ctl(true);
	/* The same bytes again: a file event, nothing changed, nothing published. */
	write_profile("p.yaml", "e6data-qpe", PAT_A, "");
	next_attempt();
	assert_int_equal(g.st.reloads_unchanged, 1);
	assert_int_equal(g.st.reloads_ok, 0);
	assert_int_equal(g.st.generation, 1);

	/* A real SIGHUP through the handler: always rebuilds. */
	assert_int_equal(raise(SIGHUP), 0);
	next_attempt();
	assert_int_equal(g.st.reloads_ok, 1);
	assert_int_equal(g.st.generation, 2);
	assert_int_equal(g_frees, 1);
	expect_profile_a();
}

static void
test_reload_request_without_watch(void **state)
{
	(void)state;
	start_ctl(false);
	assert_int_equal(g.st.watched_files, 0);
	write_profile("p.yaml", "e6data-qpe", PAT_B, "");
	/* Not watched: nothing happens until asked. */
	assert_int_equal(tl_reload_wait(g.ctl, 0, 1000000, &g.st), -ETIMEDOUT);
	assert_int_equal(g.st.attempts, 0);
	tl_reload_request(g.ctl);
	next_attempt();
	assert_int_equal(g.st.generation, 2);
	expect_profile_b();
}

static void
test_reload_parent_file_change_reloads(void **state)
{
	char text[4096];

	(void)state;
	/* p.yaml -> base.yaml -> e6data-qpe; the patterns live in base.yaml. */
	snprintf(text, sizeof(text),
	        "extends: e6data-qpe\nclassify:\n  cache_dir: ''\n  patterns:\n" PAT_A);
	write_file(g.dir, "base.yaml", text);
	write_file(g.dir, "p.yaml", "extends: 'base'   # local parent\nname: child\n");
	tl_reload_destroy(g.ctl);
	tl_live_destroy(g.live);
	tl_schema_free(g.schema);
	free(g.cfg);
	g.ctl = NULL;
	start_live();
	start_ctl(true);
	assert_int_equal(g.st.watched_files, 3);
	expect_profile_a();

	snprintf(text, sizeof(text),
	        "extends: e6data-qpe\nclassify:\n  cache_dir: ''\n  patterns:\n" PAT_B);
	write_file(g.dir, "base.yaml", text);
	next_attempt();
	assert_int_equal(g.st.reloads_ok, 1);
	assert_int_equal(g.st.generation, 2);
	expect_profile_b();
}

/* ---- 20 reloads under load ------------------------------------------------------------------ */

struct corpus {
	char *buf;
	const char **line;
	uint8_t *in_a; /* line contains NEEDLE_A */
	uint8_t *in_b;
	size_t n;
};

static struct corpus g_corpus;

static void
corpus_load(void)
{
	char path[PATH_MAX];
	size_t cap = 4096, n_a = 0, n_b = 0;
	FILE *f;
	long size;

	snprintf(path, sizeof(path), "%s/loghub/Hadoop_2k.log", data_dir());
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s (set TAPLINE_DATA)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size > 0);
	rewind(f);
	g_corpus.buf = malloc((size_t)size + 1);
	g_corpus.line = malloc(cap * sizeof(*g_corpus.line));
	assert_non_null(g_corpus.buf);
	assert_non_null(g_corpus.line);
	assert_int_equal(fread(g_corpus.buf, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	g_corpus.buf[size] = '\0';
	for (char *p = g_corpus.buf; *p != '\0';) {
		char *nl = strchr(p, '\n');

		if (g_corpus.n == cap) {
			cap *= 2;
			g_corpus.line = realloc(g_corpus.line, cap * sizeof(*g_corpus.line));
			assert_non_null(g_corpus.line);
		}
		g_corpus.line[g_corpus.n++] = p;
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	g_corpus.in_a = calloc(g_corpus.n, 1);
	g_corpus.in_b = calloc(g_corpus.n, 1);
	assert_non_null(g_corpus.in_a);
	assert_non_null(g_corpus.in_b);
	for (size_t i = 0; i < g_corpus.n; i++) {
		g_corpus.in_a[i] = strstr(g_corpus.line[i], NEEDLE_A) != NULL;
		g_corpus.in_b[i] = strstr(g_corpus.line[i], NEEDLE_B) != NULL;
		n_a += g_corpus.in_a[i];
		n_b += g_corpus.in_b[i];
	}
	assert_int_equal(g_corpus.n, 2000);
	assert_true(n_a > 100 && n_b > 100);
}

static void
corpus_free(void)
{
	free(g_corpus.buf);
	free(g_corpus.line);
	free(g_corpus.in_a);
	free(g_corpus.in_b);
	memset(&g_corpus, 0, sizeof(g_corpus));
}

struct worker {
	pthread_t th;
	unsigned id;
	struct tl_event *ev;
	uint64_t iterations; /* atomic */
	uint64_t events;
	uint64_t mismatches;
	uint64_t scan_failed;
	uint64_t last_gen; /* atomic */
	uint64_t bursts_per_gen[MAX_GEN];
	bool backwards;
	char first_mismatch[200];
};

static bool g_stop;

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t last = 0;

	tl_live_worker_online(g.live, w->id);
	while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
		for (size_t b = 0; b < g_corpus.n; b += BURST) {
			const struct tl_live_gen *gen = tl_live_current(g.live);
			bool is_a = tl_classify_db_find(gen->db, "hadoop.rm_contact") >= 0;
			const uint8_t *want = is_a ? g_corpus.in_a : g_corpus.in_b;
			size_t end = b + BURST < g_corpus.n ? b + BURST : g_corpus.n;

			if (gen->gen < last)
				w->backwards = true;
			last = gen->gen;
			if (last < MAX_GEN)
				w->bursts_per_gen[last]++;
			for (size_t i = b; i < end; i++) {
				struct tl_classify_result r;

				w->ev->col[COL_ERROR].kind = TL_VAL_STRING;
				w->ev->col[COL_ERROR].ptr = (const uint8_t *)g_corpus.line[i];
				w->ev->col[COL_ERROR].len = (uint32_t)strlen(g_corpus.line[i]);
				tl_classify_event(gen->db, gen->scratch[w->id], w->ev, &r);
				w->events++;
				w->scan_failed += r.scan_failed;
				if (r.n != want[i] || r.error != (is_a && want[i])) {
					if (w->mismatches++ == 0)
						snprintf(w->first_mismatch,
						        sizeof(w->first_mismatch),
						        "gen %llu (%s) line %zu: %u matches",
						        (unsigned long long)gen->gen,
						        is_a ? "A" : "B", i, r.n);
				}
			}
			__atomic_store_n(&w->last_gen, last, __ATOMIC_RELEASE);
			tl_live_quiescent(g.live, w->id);
		}
		__atomic_store_n(&w->iterations, w->iterations + 1, __ATOMIC_RELEASE);
	}
	tl_live_worker_offline(g.live, w->id);
	return NULL;
}

static void
wait_workers_at(struct worker *w, uint64_t gen)
{
	for (unsigned i = 0; i < N_WORKERS; i++)
		while (__atomic_load_n(&w[i].last_gen, __ATOMIC_ACQUIRE) < gen)
			sched_yield();
}

static void
test_reload_twenty_while_workers_classify_no_loss(void **state)
{
	struct worker w[N_WORKERS];
	struct tl_live_stats ls;
	uint64_t it[N_WORKERS];

	(void)state;
	corpus_load();
	start_ctl(true);
	memset(w, 0, sizeof(w));
	g_stop = false;
	for (unsigned i = 0; i < N_WORKERS; i++) {
		w[i].id = i;
		w[i].ev = calloc(1, sizeof(*w[i].ev));
		assert_non_null(w[i].ev);
		assert_int_equal(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
	}
	wait_workers_at(w, 1);
	for (unsigned k = 1; k <= N_RELOADS; k++) {
		write_profile("p.yaml", "e6data-qpe", k % 2 ? PAT_B : PAT_A, "");
		next_attempt();
		if (g.st.last_failed)
			fail_msg("reload %u: %s", k, g.st.last_error);
		assert_int_equal(g.st.reloads_ok, k);
		assert_int_equal(g.st.generation, k + 1);
		wait_workers_at(w, k + 1);
	}
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
		assert_int_equal(w[i].events, w[i].iterations * g_corpus.n);
		for (unsigned k = 1; k <= N_RELOADS + 1; k++)
			if (w[i].bursts_per_gen[k] == 0)
				fail_msg("worker %u never used generation %u", i, k);
	}
	tl_live_stats(g.live, &ls);
	assert_int_equal(ls.generation, N_RELOADS + 1);
	assert_int_equal(ls.reloads_ok, N_RELOADS);
	assert_int_equal(ls.gens_pending_free, 0);
	assert_int_equal(g_frees, N_RELOADS);
	assert_int_equal(g_publishes, N_RELOADS);
	tl_reload_destroy(g.ctl);
	g.ctl = NULL;
	tl_live_destroy(g.live);
	g.live = NULL;
	assert_int_equal(g_frees, N_RELOADS + 1);
	corpus_free();
}

/* ---- arguments ------------------------------------------------------------------------------- */

static void
test_reload_create_bad_args(void **state)
{
	struct tl_reload_conf conf = {
	        .profile = g.profile, .loaded = g.cfg, .schema = g.schema, .live = g.live};
	struct tl_reload *ctl = (struct tl_reload *)&ctl;
	struct tl_reload_status st;
	char *long_path;

	(void)state;
	assert_int_equal(tl_reload_create(NULL, &ctl), -EINVAL);
	assert_null(ctl);
	assert_int_equal(tl_reload_create(&conf, NULL), -EINVAL);
	conf.profile = NULL;
	assert_int_equal(tl_reload_create(&conf, &ctl), -EINVAL);
	conf.profile = g.profile;
	conf.loaded = NULL;
	assert_int_equal(tl_reload_create(&conf, &ctl), -EINVAL);
	conf.loaded = g.cfg;
	conf.schema = NULL;
	assert_int_equal(tl_reload_create(&conf, &ctl), -EINVAL);
	conf.schema = g.schema;
	conf.live = NULL;
	assert_int_equal(tl_reload_create(&conf, &ctl), -EINVAL);
	conf.live = g.live;
	long_path = malloc(TL_LIVE_PATH_MAX + 1);
	assert_non_null(long_path);
	memset(long_path, 'a', TL_LIVE_PATH_MAX);
	long_path[TL_LIVE_PATH_MAX] = '\0';
	conf.profile = long_path;
	assert_int_equal(tl_reload_create(&conf, &ctl), -ENAMETOOLONG);
	free(long_path);
	/* The profile's folder must be watchable. */
	conf.profile = "/nonexistent-tl-reload/p.yaml";
	assert_int_equal(tl_reload_create(&conf, &ctl), -ENOENT);
	assert_null(ctl);

	/* Without watching it starts; a request then fails to load and says why. */
	conf.no_watch = true;
	assert_int_equal(tl_reload_create(&conf, &g.ctl), 0);
	tl_reload_request(g.ctl);
	next_attempt();
	assert_int_equal(g.st.reloads_failed, 1);
	expect_error_has("/nonexistent-tl-reload/p.yaml");
	assert_int_equal(g.st.generation, 1);

	tl_reload_request(NULL);
	tl_reload_destroy(NULL);
	memset(&st, 0xff, sizeof(st));
	tl_reload_status(NULL, &st);
	assert_int_equal(st.attempts, 0);
	assert_string_equal(st.last_error, "");
	tl_reload_status(g.ctl, NULL);
	assert_int_equal(tl_reload_wait(NULL, 0, 0, &st), -EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(
	                test_reload_file_renamed_new_patterns_published, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_reload_bad_regex_rejected_old_kept, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_reload_frozen_sections_restart_needed, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_reload_broken_yaml_rejected_with_location, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_reload_prepare_rejects_old_kept, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_reload_sighup_rebuilds_unchanged_file_skipped,
	                test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_reload_request_without_watch, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_reload_parent_file_change_reloads, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_reload_twenty_while_workers_classify_no_loss,
	                test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_reload_create_bad_args, test_setup, test_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
