/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Tests for the LMDB spool: ordering, group commit and callbacks, concurrency, reopen,
 * kill -9 of a writing child, damaged records, map growth, the three full policies,
 * readers vs the writer, a failing commit (mdb_txn_commit faked with -Wl,--wrap), the
 * transaction hook with its side data and `state` database, FORCE puts and the
 * benchmark. Every spool lives in a mkdtemp() folder under /tmp that is removed.
 * Payloads are real log lines (loghub HDFS) where content matters, PRNG bytes elsewhere.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>
#include <xxhash.h>

#include "tl_error.h"
#include "tl_log.h"
#include "tl_spool.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define HDR 32u

/* ---- mdb_txn_commit fake: fails with a chosen code while armed ---- */

int __real_mdb_txn_commit(MDB_txn *txn);
int __wrap_mdb_txn_commit(MDB_txn *txn);

static _Atomic int commit_fail_rc;

int
__wrap_mdb_txn_commit(MDB_txn *txn)
{
	int rc = atomic_load(&commit_fail_rc);

	if (rc != 0) {
		/* A failed commit frees the transaction, as the real one does. */
		mdb_txn_abort(txn);
		return rc;
	}
	return __real_mdb_txn_commit(txn);
}

/* ---- helpers ---- */

struct fixture {
	char dir[64];
	struct tl_spool_conf conf;
};

static void
rm_spool(const char *dir)
{
	char f[128];

	snprintf(f, sizeof(f), "%s/data.mdb", dir);
	unlink(f);
	snprintf(f, sizeof(f), "%s/lock.mdb", dir);
	unlink(f);
	snprintf(f, sizeof(f), "%s/writer.lock", dir);
	unlink(f);
}

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/tl_spool_XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	assert_int_equal(tl_opt_defaults(tl_spool_opts, &fx->conf), 0);
	snprintf(fx->conf.path, sizeof(fx->conf.path), "%s", fx->dir);
	fx->conf.initial_size = 1 << 20;
	fx->conf.max_size = 64 << 20;
	fx->conf.buffer_size = 64 << 10;
	fx->conf.buffers = 8;
	fx->conf.commit_interval_ns = 1 * MS;
	fx->conf.nosync = true;
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;

	atomic_store(&commit_fail_rc, 0);
	rm_spool(fx->dir);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

static uint64_t
rng64(uint64_t *s)
{
	/* xorshift64: reproducible payloads from a seed. */
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void
fill(uint8_t *p, uint32_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;

	for (uint32_t i = 0; i < n; i++)
		p[i] = (uint8_t)(rng64(&s) >> 32);
}

/* Real event text: the loghub HDFS sample. */
static char *
load_log(size_t *len)
{
	const char *d = getenv("TAPLINE_DATA");
	char path[512];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/loghub/HDFS_2k.log", d ? d : "../shared/data");
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 100000);
	rewind(f);
	buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Commit callback log. */
struct centry {
	unsigned producer;
	uint64_t user, key;
	int status;
	int readable;   /* the record was readable from inside the callback */
	unsigned hooks; /* transaction hook calls so far, when clog.hook_calls is set */
};

struct clog {
	pthread_mutex_t mu;
	struct centry *e;
	size_t n, cap;
	struct tl_spool *sp;        /* set after open: read back from the callback */
	const unsigned *hook_calls; /* the writer's hook counter (same thread), or NULL */
};

static void
clog_init(struct clog *c, size_t cap)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	c->e = calloc(cap, sizeof(*c->e));
	assert_non_null(c->e);
	c->cap = cap;
}

static void
clog_fini(struct clog *c)
{
	pthread_mutex_destroy(&c->mu);
	free(c->e);
}

static int
find_key(void *arg, const struct tl_spool_rec *rec)
{
	*(uint64_t *)arg = rec->key;
	return 1;
}

static void
on_commit(void *arg, unsigned producer, uint64_t user, uint64_t key, int status)
{
	struct clog *c = arg;
	uint64_t found = 0;
	int readable = 0;

	/* A committed record must already be visible to a new reader. */
	if (status == 0 && c->sp != NULL &&
	        tl_spool_read(c->sp, key, 1, find_key, &found, NULL) == 1 && found == key)
		readable = 1;
	pthread_mutex_lock(&c->mu);
	if (c->n < c->cap)
		c->e[c->n++] = (struct centry){producer, user, key, status, readable,
		        c->hook_calls != NULL ? *c->hook_calls : 0};
	pthread_mutex_unlock(&c->mu);
}

static size_t
clog_count(struct clog *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->n;
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* Collects what tl_spool_read passes. */
struct got {
	size_t n, cap;
	uint64_t *keys;
	uint8_t **data;
	uint32_t *len;
	uint16_t *producer;
};

static void
got_init(struct got *g, size_t cap)
{
	memset(g, 0, sizeof(*g));
	g->cap = cap;
	g->keys = calloc(cap, sizeof(*g->keys));
	g->data = calloc(cap, sizeof(*g->data));
	g->len = calloc(cap, sizeof(*g->len));
	g->producer = calloc(cap, sizeof(*g->producer));
	assert_true(g->keys && g->data && g->len && g->producer);
}

static void
got_fini(struct got *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->data[i]);
	free(g->keys);
	free(g->data);
	free(g->len);
	free(g->producer);
}

static int
collect(void *arg, const struct tl_spool_rec *rec)
{
	struct got *g = arg;

	if (g->n == g->cap)
		return -1;
	g->keys[g->n] = rec->key;
	g->len[g->n] = rec->len;
	g->producer[g->n] = rec->producer;
	g->data[g->n] = malloc(rec->len ? rec->len : 1);
	assert_non_null(g->data[g->n]);
	memcpy(g->data[g->n], rec->data, rec->len);
	g->n++;
	return 0;
}

/* Read everything from @p from in chunks, as the uplink would. */
static void
read_all(struct tl_spool *sp, uint64_t from, struct got *g)
{
	uint64_t next = from;
	int n;

	do {
		n = tl_spool_read(sp, next, 7, collect, g, &next);
		assert_true(n >= 0);
	} while (n > 0);
}

static struct tl_spool *
open_spool(const struct tl_spool_conf *c, unsigned n_prod, struct clog *log)
{
	struct tl_spool *sp = NULL;

	assert_int_equal(tl_spool_open(c, n_prod, 0, log ? on_commit : NULL, log, &sp), 0);
	assert_non_null(sp);
	if (log != NULL)
		log->sp = sp;
	return sp;
}

/*
 * Get a buffer (waiting up to 5 s for the writer to return one), fill it, put it.
 * No cmocka assertions: producer threads call it too.
 */
static int
try_put_flags(struct tl_spool *sp, unsigned prod, const void *p, uint32_t n, uint64_t user,
        unsigned flags)
{
	const struct timespec pause = {.tv_nsec = 100000};
	struct tl_spool_buf *b;
	int rc;

	for (int i = 0; (b = tl_spool_buf_get(sp, prod)) == NULL; i++) {
		if (i == 50000)
			return -ETIMEDOUT;
		nanosleep(&pause, NULL);
	}
	if (b->len != 0 || n > b->cap)
		return -EPROTO;
	memcpy(b->data, p, n);
	b->len = n;
	b->user = user;
	rc = flags ? tl_spool_buf_put_flags(sp, prod, b, flags) : tl_spool_buf_put(sp, prod, b);
	if (rc != 0 && tl_spool_buf_release(sp, prod, b) != 0)
		return -EPROTO; /* refused: ours to give back */
	return rc;
}

static int
try_put(struct tl_spool *sp, unsigned prod, const void *p, uint32_t n, uint64_t user)
{
	return try_put_flags(sp, prod, p, n, user, 0);
}

static int
put_bytes(struct tl_spool *sp, unsigned prod, const void *p, uint32_t n, uint64_t user)
{
	int rc = try_put(sp, prod, p, n, user);

	assert_int_not_equal(rc, -ETIMEDOUT);
	assert_int_not_equal(rc, -EPROTO);
	return rc;
}

static int
put_seeded(struct tl_spool *sp, unsigned prod, uint32_t n, uint64_t seed)
{
	uint8_t *p = malloc(n ? n : 1);
	int rc;

	assert_non_null(p);
	fill(p, n, seed);
	rc = put_bytes(sp, prod, p, n, seed);
	free(p);
	return rc;
}

static void
check_seeded(const uint8_t *p, uint32_t n, uint64_t seed)
{
	uint8_t *q = malloc(n ? n : 1);

	assert_non_null(q);
	fill(q, n, seed);
	assert_memory_equal(p, q, n);
	free(q);
}

/* ---- configuration and arguments ---- */

static void
test_spool_opts_defaults_valid(void **state)
{
	struct tl_spool_conf c;
	char msg[160];

	(void)state;
	memset(&c, 0xa5, sizeof(c));
	assert_int_equal(tl_opt_defaults(tl_spool_opts, &c), 0);
	assert_string_equal(c.path, "/var/lib/tapline/spool");
	assert_int_equal(c.initial_size, 64ull << 20);
	assert_int_equal(c.max_size, 4ull << 30);
	assert_int_equal(c.high_water_pct, 90);
	assert_int_equal(c.policy, TL_SPOOL_BACKPRESSURE);
	assert_int_equal(c.commit_interval_ns, 2 * MS);
	assert_int_equal(c.commit_bytes, 8ull << 20);
	assert_int_equal(c.buffer_size, 2ull << 20);
	assert_int_equal(c.buffers, 8);
	assert_false(c.nosync);
	assert_int_equal(tl_spool_check(&c, msg, sizeof(msg)), 0);
	assert_string_equal(tl_spool_policy_names[TL_SPOOL_DROP_OLDEST], "drop_oldest");
	assert_string_equal(tl_spool_policy_names[TL_SPOOL_DROP_NEWEST], "drop_newest");
	assert_null(tl_spool_policy_names[3]);
}

static void
test_spool_check_inconsistent_conf_rejected(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c;
	char msg[160];

	c = fx->conf;
	c.initial_size = c.max_size * 2;
	msg[0] = '\0';
	assert_int_not_equal(tl_spool_check(&c, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "initial_size"));

	c = fx->conf;
	c.buffer_size = c.max_size / 2;
	assert_int_not_equal(tl_spool_check(&c, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "buffer_size"));

	c = fx->conf;
	c.path[0] = '\0';
	assert_int_not_equal(tl_spool_check(&c, msg, sizeof(msg)), 0);

	c = fx->conf;
	c.high_water_pct = 0;
	assert_int_not_equal(tl_spool_check(&c, msg, sizeof(msg)), 0);

	c = fx->conf;
	c.policy = 7;
	assert_int_not_equal(tl_spool_check(&c, msg, sizeof(msg)), 0);

	c = fx->conf;
	c.buffers = 1;
	assert_int_not_equal(tl_spool_check(&c, msg, sizeof(msg)), 0);

	c = fx->conf;
	c.commit_bytes = 0;
	assert_int_not_equal(tl_spool_check(&c, msg, sizeof(msg)), 0);
}

static void
test_spool_open_bad_args_einval(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool *sp = (struct tl_spool *)&sp;
	struct tl_spool_conf c = fx->conf;

	assert_int_equal(tl_spool_open(NULL, 1, 0, NULL, NULL, &sp), -EINVAL);
	assert_null(sp);
	assert_int_equal(tl_spool_open(&c, 1, 0, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(tl_spool_open(&c, 100000, 0, NULL, NULL, &sp), -EINVAL);
	assert_int_equal(tl_spool_open(&c, 1, 0x80, NULL, NULL, &sp), -EINVAL);
	assert_int_equal(tl_spool_open(&c, 1, TL_SPOOL_RDONLY, NULL, NULL, &sp), -EINVAL);
	assert_int_equal(tl_spool_open(&c, 0, TL_SPOOL_RDONLY, on_commit, NULL, &sp), -EINVAL);
	c.initial_size = c.max_size + 1;
	assert_int_equal(tl_spool_open(&c, 1, 0, NULL, NULL, &sp), -EINVAL);
	c = fx->conf;
	memset(c.path, 'x', sizeof(c.path)); /* not terminated */
	assert_int_equal(tl_spool_open(&c, 1, 0, NULL, NULL, &sp), -EINVAL);
	assert_null(sp);
}

static void
test_spool_open_path_under_file_fails(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = fx->conf;
	struct tl_spool *sp = NULL;
	char file[128];
	FILE *f;

	snprintf(file, sizeof(file), "%s/plain", fx->dir);
	f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	snprintf(c.path, sizeof(c.path), "%s/sub", file);
	assert_int_equal(tl_spool_open(&c, 1, 0, NULL, NULL, &sp), -ENOTDIR);
	assert_null(sp);
	unlink(file);
}

static void
test_spool_open_second_writer_ebusy_reader_ok(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool *sp = open_spool(&fx->conf, 1, NULL), *sp2 = NULL, *ro = NULL;
	struct tl_spool_stats st;
	uint64_t k = 0;
	int status;
	pid_t pid;

	assert_int_equal(put_seeded(sp, 0, 10, 1), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(tl_spool_open(&fx->conf, 1, 0, NULL, NULL, &sp2), -EBUSY);
	assert_null(sp2);
	/* The first one is unharmed. */
	assert_int_equal(put_seeded(sp, 0, 10, 2), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	/*
	 * A read-only tool can look while the writer runs: in another process, as LMDB
	 * forbids one environment open twice in a process.
	 */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (tl_spool_open(&fx->conf, 0, TL_SPOOL_RDONLY, NULL, NULL, &ro) != 0)
			_exit(1);
		tl_spool_stats(ro, &st);
		if (st.records != 2 || tl_spool_read(ro, 2, 1, find_key, &k, NULL) != 1 || k != 2)
			_exit(2);
		tl_spool_close(ro);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	tl_spool_close(sp);
	/* Released at close. */
	sp2 = open_spool(&fx->conf, 1, NULL);
	tl_spool_close(sp2);
}

static void
test_spool_open_rdonly_missing_enoent(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool *sp = NULL;

	assert_int_equal(tl_spool_open(&fx->conf, 0, TL_SPOOL_RDONLY, NULL, NULL, &sp), -ENOENT);
	assert_null(sp);
}

static void
test_spool_close_stats_null_safe(void **state)
{
	struct tl_spool_stats st;

	(void)state;
	tl_spool_close(NULL);
	memset(&st, 0xff, sizeof(st));
	tl_spool_stats(NULL, &st);
	assert_int_equal(st.records, 0);
	assert_int_equal(st.error, 0);
	tl_spool_stats(NULL, NULL);
	assert_null(tl_spool_buf_get(NULL, 0));
	assert_int_equal(tl_spool_buf_put(NULL, 0, NULL), -EINVAL);
	assert_int_equal(tl_spool_ack(NULL, 1), -EINVAL);
	assert_int_equal(tl_spool_flush(NULL, 0), -EINVAL);
	assert_int_equal(tl_spool_read(NULL, 1, 1, collect, NULL, NULL), -EINVAL);
	assert_string_not_equal(tl_strerror(TL_E_SPOOL), "unknown error");
	assert_string_not_equal(tl_strerror(TL_E_SPOOL_CORRUPT), "unknown error");
}

/* ---- basic path ---- */

static void
test_spool_put_commit_read_in_order(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_stats st;
	struct clog log;
	struct got g;
	size_t loglen, off = 0, sizes[20];
	char *text = load_log(&loglen);
	uint64_t sum = 0, next = 0;
	struct tl_spool *sp;

	clog_init(&log, 64);
	sp = open_spool(&fx->conf, 1, &log);
	/* 20 batches of consecutive HDFS log text, 1-24 KiB each. */
	for (int i = 0; i < 20; i++) {
		size_t n = 1024 + (size_t)i * 1200;

		assert_true(off + n <= loglen);
		assert_int_equal(put_bytes(sp, 0, text + off, (uint32_t)n, 1000 + i), 0);
		sizes[i] = n;
		sum += n;
		off += n;
	}
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(clog_count(&log), 20);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(log.e[i].producer, 0);
		assert_int_equal(log.e[i].user, 1000 + i);
		assert_int_equal(log.e[i].key, i + 1);
		assert_int_equal(log.e[i].status, 0);
		assert_int_equal(log.e[i].readable, 1);
	}
	got_init(&g, 64);
	read_all(sp, 0, &g);
	assert_int_equal(g.n, 20);
	off = 0;
	for (int i = 0; i < 20; i++) {
		assert_int_equal(g.keys[i], i + 1);
		assert_int_equal(g.len[i], sizes[i]);
		assert_memory_equal(g.data[i], text + off, sizes[i]);
		off += sizes[i];
	}
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 20);
	assert_int_equal(st.bytes, sum);
	assert_int_equal(st.records_committed, 20);
	assert_int_equal(st.bytes_written, sum + 20 * HDR);
	assert_int_equal(st.next_key, 21);
	assert_true(st.commits >= 1 && st.commits <= 20);
	assert_true(st.oldest_age_ns > 0 && st.oldest_age_ns < 3600 * SEC);

	/* Delivered -> deleted; unknown keys are counted, not fatal. */
	for (uint64_t k = 1; k <= 10; k++)
		assert_int_equal(tl_spool_ack(sp, k), 0);
	assert_int_equal(tl_spool_ack(sp, 999), 0);
	assert_int_equal(tl_spool_ack(sp, 0), -EINVAL);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 10);
	assert_int_equal(st.acked, 10);
	assert_int_equal(st.ack_unknown, 1);
	assert_int_equal(tl_spool_read(sp, 1, 100, find_key, &next, NULL), 1);
	assert_int_equal(next, 11);
	got_fini(&g);
	tl_spool_close(sp);
	clog_fini(&log);
	free(text);
}

static int
stop_at_once(void *arg, const struct tl_spool_rec *rec)
{
	(void)arg;
	(void)rec;
	return -1;
}

static int
take_one_stop(void *arg, const struct tl_spool_rec *rec)
{
	*(uint64_t *)arg = rec->key;
	return 1;
}

static void
test_spool_read_callback_controls_stop(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool *sp = open_spool(&fx->conf, 1, NULL);
	uint64_t next = 77, k = 0;

	for (int i = 0; i < 5; i++)
		assert_int_equal(put_seeded(sp, 0, 100, (uint64_t)i), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(tl_spool_read(sp, 1, 10, NULL, NULL, &next), -EINVAL);
	assert_int_equal(tl_spool_read(sp, 3, 0, collect, NULL, &next), 0);
	assert_int_equal(next, 3);
	/* < 0: not taken, resume at that record. */
	assert_int_equal(tl_spool_read(sp, 2, 10, stop_at_once, NULL, &next), 0);
	assert_int_equal(next, 2);
	/* > 0: taken, stop. */
	assert_int_equal(tl_spool_read(sp, 2, 10, take_one_stop, &k, &next), 1);
	assert_int_equal(k, 2);
	assert_int_equal(next, 3);
	/* Past the end. */
	assert_int_equal(tl_spool_read(sp, 6, 10, take_one_stop, &k, &next), 0);
	assert_int_equal(next, 6);
	tl_spool_close(sp);
}

/* Collects each record's key and claim. */
struct owners {
	size_t n;
	uint64_t key[16];
	int owner[16];
};

static int
collect_owner(void *arg, const struct tl_spool_rec *rec)
{
	struct owners *o = arg;

	if (o->n == 16)
		return -1;
	o->key[o->n] = rec->key;
	o->owner[o->n++] = rec->owner;
	return 0;
}

static void
read_owners(struct tl_spool *sp, struct owners *o)
{
	memset(o, 0, sizeof(*o));
	assert_true(tl_spool_read(sp, 1, 16, collect_owner, o, NULL) >= 0);
}

static void
test_spool_claim_read_back_survives_reopen_deleted_with_record(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool *sp = open_spool(&fx->conf, 1, NULL);
	struct owners o;

	for (int i = 0; i < 4; i++)
		assert_int_equal(put_seeded(sp, 0, 100, (uint64_t)i), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	read_owners(sp, &o);
	assert_int_equal(o.n, 4);
	for (size_t i = 0; i < o.n; i++)
		assert_int_equal(o.owner[i], -1);
	assert_int_equal(tl_spool_claim(sp, 2, 1), 0);
	assert_int_equal(tl_spool_claim(sp, 3, 63), 0);
	assert_int_equal(tl_spool_claim(sp, 4, 0), 0);
	/* A claim of a record that is not there is ignored. */
	assert_int_equal(tl_spool_claim(sp, 99, 5), 0);
	assert_int_equal(tl_spool_sync_acks(sp, 5 * SEC), 0);
	read_owners(sp, &o);
	assert_int_equal(o.n, 4);
	assert_int_equal(o.owner[0], -1);
	assert_int_equal(o.owner[1], 1);
	assert_int_equal(o.owner[2], 63);
	assert_int_equal(o.owner[3], 0);
	/* The ack deletes record 3 and its claim; the others keep theirs across a reopen. */
	assert_int_equal(tl_spool_ack(sp, 3), 0);
	assert_int_equal(tl_spool_sync_acks(sp, 5 * SEC), 0);
	tl_spool_close(sp);
	sp = open_spool(&fx->conf, 1, NULL);
	read_owners(sp, &o);
	assert_int_equal(o.n, 3);
	assert_int_equal(o.key[1], 2);
	assert_int_equal(o.owner[1], 1);
	assert_int_equal(o.key[2], 4);
	assert_int_equal(o.owner[2], 0);
	/* Claimed again: the new claimant replaces the old. */
	assert_int_equal(tl_spool_claim(sp, 2, 7), 0);
	assert_int_equal(tl_spool_sync_acks(sp, 5 * SEC), 0);
	read_owners(sp, &o);
	assert_int_equal(o.owner[1], 7);
	tl_spool_close(sp);
}

static void
test_spool_claim_bad_args_einval_erofs(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool *sp = open_spool(&fx->conf, 1, NULL), *ro = NULL;

	assert_int_equal(tl_spool_claim(NULL, 1, 0), -EINVAL);
	assert_int_equal(tl_spool_claim(sp, 0, 0), -EINVAL);
	assert_int_equal(tl_spool_claim(sp, 1ull << 56, 0), -EINVAL);
	assert_int_equal(tl_spool_claim(sp, 1, TL_SPOOL_MAX_OWNERS), -EINVAL);
	assert_int_equal(tl_spool_sync_acks(NULL, SEC), -EINVAL);
	/* Keys with the flag bits set are not keys. */
	assert_int_equal(tl_spool_ack(sp, 1ull << 62), -EINVAL);
	assert_int_equal(tl_spool_quarantine(sp, 1ull << 62), -EINVAL);
	assert_int_equal(tl_spool_open(&fx->conf, 0, TL_SPOOL_RDONLY, NULL, NULL, &ro), 0);
	assert_int_equal(tl_spool_claim(ro, 1, 0), -EROFS);
	assert_int_equal(tl_spool_sync_acks(ro, SEC), -EROFS);
	tl_spool_close(ro);
	tl_spool_close(sp);
}

static void
test_spool_pool_exhausted_null_counted(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = fx->conf;
	struct tl_spool_buf *a, *b;
	struct tl_spool_stats st;
	struct tl_spool *sp;

	c.buffers = 2;
	sp = open_spool(&c, 1, NULL);
	a = tl_spool_buf_get(sp, 0);
	b = tl_spool_buf_get(sp, 0);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	assert_null(tl_spool_buf_get(sp, 0));
	assert_null(tl_spool_buf_get(sp, 1)); /* no such producer */
	tl_spool_stats(sp, &st);
	assert_int_equal(st.pool_empty, 1);
	a->len = 10;
	memset(a->data, 'a', 10);
	assert_int_equal(tl_spool_buf_put(sp, 0, a), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	/* Back in the pool after its commit. */
	a = tl_spool_buf_get(sp, 0);
	assert_non_null(a);
	assert_int_equal(a->len, 0);
	b->len = 0;
	assert_int_equal(tl_spool_buf_put(sp, 0, b), 0); /* an empty payload is a record */
	a->len = 1;
	a->data[0] = 'z';
	assert_int_equal(tl_spool_buf_put(sp, 0, a), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 3);
	assert_int_equal(st.bytes, 11);
	/* Released buffers come back to the pool without being stored. */
	a = tl_spool_buf_get(sp, 0);
	b = tl_spool_buf_get(sp, 0);
	assert_non_null(a);
	assert_non_null(b);
	assert_null(tl_spool_buf_get(sp, 0));
	a->len = 7;
	assert_int_equal(tl_spool_buf_release(sp, 0, a), 0);
	assert_int_equal(tl_spool_buf_release(sp, 0, a), -EINVAL); /* not held any more */
	assert_int_equal(tl_spool_buf_release(sp, 1, b), -EINVAL);
	assert_int_equal(tl_spool_buf_release(NULL, 0, b), -EINVAL);
	assert_int_equal(tl_spool_buf_release(sp, 0, b), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	a = tl_spool_buf_get(sp, 0);
	b = tl_spool_buf_get(sp, 0);
	assert_non_null(a);
	assert_non_null(b);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 3);
	assert_int_equal(st.records_committed, 3);
	tl_spool_close(sp);
}

static void
test_spool_put_foreign_or_bad_buffer_einval(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool *sp = open_spool(&fx->conf, 2, NULL);
	struct tl_spool_buf *a = tl_spool_buf_get(sp, 0);
	struct tl_spool_buf fake = {0};
	struct tl_spool_stats st;

	assert_non_null(a);
	a->len = 5;
	assert_int_equal(tl_spool_buf_put(sp, 1, a), -EINVAL); /* producer 0's buffer */
	assert_int_equal(tl_spool_buf_put(sp, 2, a), -EINVAL); /* no such producer */
	assert_int_equal(tl_spool_buf_put(sp, 0, &fake), -EINVAL);
	assert_int_equal(tl_spool_buf_put(sp, 0, NULL), -EINVAL);
	assert_int_equal(tl_spool_buf_put(sp, 0, (struct tl_spool_buf *)((char *)a + 8)), -EINVAL);
	a->len = a->cap + 1;
	assert_int_equal(tl_spool_buf_put(sp, 0, a), -EINVAL);
	a->len = 5;
	memcpy(a->data, "hello", 5);
	assert_int_equal(tl_spool_buf_put(sp, 0, a), 0);
	assert_int_equal(tl_spool_buf_put(sp, 0, a), -EINVAL); /* twice */
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 1);
	tl_spool_close(sp);
}

/* ---- concurrency ---- */

#define MP_PRODUCERS 4
#define MP_RECORDS 300

struct mp_arg {
	struct tl_spool *sp;
	unsigned id;
};

static void *
mp_producer(void *arg)
{
	struct mp_arg *a = arg;
	uint8_t p[2048];

	for (uint32_t seq = 0; seq < MP_RECORDS; seq++) {
		uint64_t seed = ((uint64_t)a->id << 32) | seq;
		uint32_t n = 16 + (uint32_t)(seed * 2654435761u % 2000);

		fill(p, n, seed);
		memcpy(p, &a->id, 4);
		memcpy(p + 4, &seq, 4);
		if (try_put(a->sp, a->id, p, n, seq) != 0)
			return (void *)1;
	}
	return NULL;
}

static void
test_spool_many_producers_each_once_in_order(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = fx->conf;
	pthread_t th[MP_PRODUCERS];
	struct mp_arg args[MP_PRODUCERS];
	uint32_t expect[MP_PRODUCERS] = {0};
	uint64_t lastuser[MP_PRODUCERS];
	struct tl_spool_stats st;
	struct clog log;
	struct got g;
	struct tl_spool *sp;

	c.buffers = 4; /* small pools: producers wait on the writer often */
	c.commit_bytes = 64 << 10;
	clog_init(&log, MP_PRODUCERS * MP_RECORDS + 1);
	sp = open_spool(&c, MP_PRODUCERS, &log);
	log.sp = NULL; /* no read-back: keep the writer busy */
	for (unsigned i = 0; i < MP_PRODUCERS; i++) {
		args[i] = (struct mp_arg){sp, i};
		assert_int_equal(pthread_create(&th[i], NULL, mp_producer, &args[i]), 0);
	}
	for (unsigned i = 0; i < MP_PRODUCERS; i++) {
		void *r;

		pthread_join(th[i], &r);
		assert_null(r);
	}
	assert_int_equal(tl_spool_flush(sp, 10 * SEC), 0);
	assert_int_equal(clog_count(&log), MP_PRODUCERS * MP_RECORDS);
	/* Callbacks: per producer in put order, keys increasing. */
	for (unsigned i = 0; i < MP_PRODUCERS; i++)
		lastuser[i] = UINT64_MAX;
	for (size_t i = 0; i < log.n; i++) {
		struct centry *e = &log.e[i];

		assert_int_equal(e->status, 0);
		assert_true(e->producer < MP_PRODUCERS);
		assert_int_equal(e->user, lastuser[e->producer] + 1);
		lastuser[e->producer] = e->user;
		if (i > 0)
			assert_true(e->key > log.e[i - 1].key);
	}
	got_init(&g, MP_PRODUCERS * MP_RECORDS + 1);
	read_all(sp, 1, &g);
	assert_int_equal(g.n, MP_PRODUCERS * MP_RECORDS);
	for (size_t i = 0; i < g.n; i++) {
		uint32_t id, seq;
		uint64_t seed;

		memcpy(&id, g.data[i], 4);
		memcpy(&seq, g.data[i] + 4, 4);
		assert_true(id < MP_PRODUCERS);
		assert_int_equal(g.producer[i], id);
		assert_int_equal(seq, expect[id]); /* exactly once, in per-producer order */
		expect[id]++;
		seed = ((uint64_t)id << 32) | seq;
		{
			uint8_t *q = malloc(g.len[i]);

			assert_non_null(q);
			fill(q, g.len[i], seed);
			assert_memory_equal(g.data[i] + 8, q + 8, g.len[i] - 8);
			free(q);
		}
		if (i > 0)
			assert_true(g.keys[i] > g.keys[i - 1]);
	}
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, MP_PRODUCERS * MP_RECORDS);
	assert_true(st.max_records_per_commit >= 1);
	got_fini(&g);
	tl_spool_close(sp);
	clog_fini(&log);
}

/* ---- reopen ---- */

static void
test_spool_reopen_records_survive_keys_continue(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_stats st;
	struct clog log;
	struct got g;
	struct tl_spool *sp;

	sp = open_spool(&fx->conf, 1, NULL);
	for (int i = 0; i < 10; i++)
		assert_int_equal(put_seeded(sp, 0, 3000, (uint64_t)i), 0);
	/* No flush: close commits what was handed over. */
	tl_spool_close(sp);

	clog_init(&log, 16);
	sp = open_spool(&fx->conf, 1, &log);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 10);
	assert_int_equal(st.bytes, 30000);
	assert_int_equal(st.next_key, 11);
	assert_int_equal(st.quarantined, 0);
	got_init(&g, 32);
	read_all(sp, 1, &g);
	assert_int_equal(g.n, 10);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(g.keys[i], i + 1);
		check_seeded(g.data[i], g.len[i], (uint64_t)i);
	}
	for (int i = 10; i < 15; i++)
		assert_int_equal(put_seeded(sp, 0, 500, (uint64_t)i), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(log.n, 5);
	assert_int_equal(log.e[0].key, 11);
	assert_int_equal(log.e[4].key, 15);
	for (uint64_t k = 1; k <= 15; k++)
		assert_int_equal(tl_spool_ack(sp, k), 0);
	tl_spool_close(sp);

	/* Empty now, but keys are never reused. */
	log.n = 0;
	sp = open_spool(&fx->conf, 1, &log);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 0);
	assert_int_equal(st.oldest_age_ns, 0);
	assert_int_equal(put_seeded(sp, 0, 10, 99), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(log.n, 1);
	assert_int_equal(log.e[0].key, 16);
	got_fini(&g);
	tl_spool_close(sp);
	clog_fini(&log);
}

/* ---- kill -9 ---- */

struct crash_msg {
	uint64_t key;
	uint64_t xxh;
};

static int crash_fd = -1;

static void
crash_commit(void *arg, unsigned producer, uint64_t user, uint64_t key, int status)
{
	struct crash_msg m = {key, user};

	(void)arg;
	(void)producer;
	/* 16 bytes < PIPE_BUF: atomic; reported only once the commit is durable. */
	if (status == 0 && write(crash_fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		_exit(3);
}

static void
crash_child(const struct tl_spool_conf *c, int fd, uint64_t seed)
{
	struct tl_spool *sp = NULL;
	uint64_t s = seed;

	crash_fd = fd;
	alarm(20); /* never outlive the test */
	if (tl_spool_open(c, 1, 0, crash_commit, NULL, &sp) != 0)
		_exit(2);
	for (;;) {
		struct tl_spool_buf *b = tl_spool_buf_get(sp, 0);
		uint32_t n;

		if (b == NULL) {
			sched_yield();
			continue;
		}
		n = 100 + (uint32_t)(rng64(&s) % (b->cap - 100));
		fill(b->data, n, rng64(&s));
		b->len = n;
		/* The checksum travels as the cookie and comes back with the key. */
		b->user = XXH3_64bits(b->data, n);
		if (tl_spool_buf_put(sp, 0, b) != 0)
			_exit(4);
	}
}

struct crash_check {
	uint64_t key, xxh;
	int found;
};

static int
crash_verify(void *arg, const struct tl_spool_rec *rec)
{
	struct crash_check *c = arg;

	if (rec->key == c->key && XXH3_64bits(rec->data, rec->len) == c->xxh)
		c->found = 1;
	return 1;
}

static void
test_spool_crash_kill9_committed_records_intact(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = fx->conf;
	const unsigned delays_ms[] = {7, 40, 150, 23};
	uint64_t total = 0;

	c.nosync = false; /* durability is the point */
	c.buffer_size = 32 << 10;
	c.commit_interval_ns = 500000;
	for (unsigned round = 0; round < 4; round++) {
		struct crash_msg *msgs = NULL;
		size_t n = 0, cap = 0;
		struct tl_spool_stats st;
		struct tl_spool *sp;
		int fds[2], status;
		pid_t pid;
		ssize_t r;

		assert_int_equal(pipe(fds), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			crash_child(&c, fds[1], 1234 + round);
			_exit(5);
		}
		close(fds[1]);
		/* Wait for a few durable commits, then kill at a chosen instant. */
		for (;;) {
			struct crash_msg m;

			if (n == cap) {
				cap = cap ? cap * 2 : 1024;
				msgs = realloc(msgs, cap * sizeof(*msgs));
				assert_non_null(msgs);
			}
			if (n >= 5)
				break;
			r = read(fds[0], &m, sizeof(m));
			assert_int_equal(r, sizeof(m));
			msgs[n++] = m;
		}
		usleep(delays_ms[round] * 1000);
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		for (;;) {
			if (n == cap) {
				cap *= 2;
				msgs = realloc(msgs, cap * sizeof(*msgs));
				assert_non_null(msgs);
			}
			r = read(fds[0], &msgs[n], sizeof(*msgs));
			if (r == 0)
				break;
			assert_int_equal(r, sizeof(*msgs));
			n++;
		}
		close(fds[0]);

		sp = open_spool(&c, 1, NULL);
		tl_spool_stats(sp, &st);
		assert_int_equal(st.quarantined, 0);
		assert_true(st.records >= total + n);
		for (size_t i = 0; i < n; i++) {
			struct crash_check chk = {msgs[i].key, msgs[i].xxh, 0};

			assert_int_equal(
			        tl_spool_read(sp, msgs[i].key, 1, crash_verify, &chk, NULL), 1);
			assert_int_equal(chk.found, 1);
		}
		total = st.records;
		tl_spool_close(sp);
		free(msgs);
	}
}

/* ---- damaged records ---- */

static void
raw_put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl, const void *v, size_t vl)
{
	MDB_val kv = {kl, (void *)k}, vv = {vl, (void *)v};

	assert_int_equal(mdb_put(txn, dbi, &kv, &vv, 0), 0);
}

static void
key_be(uint64_t key, uint8_t out[8])
{
	for (int i = 7; i >= 0; i--, key >>= 8)
		out[i] = (uint8_t)key;
}

/* Damage 5 records of a closed 10-record spool with raw LMDB. */
static void
damage_spool(const char *dir, uint8_t *bad_magic_copy, size_t *bad_magic_len)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t k[8], v[4096];
	MDB_val kv = {8, k}, vv;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
	assert_int_equal(mdb_env_open(env, dir, MDB_NOSYNC, 0640), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "records", 0, &dbi), 0);
	/* key 3: one payload bit flipped (checksum mismatch) */
	key_be(3, k);
	assert_int_equal(mdb_get(txn, dbi, &kv, &vv), 0);
	assert_true(vv.mv_size > HDR + 10 && vv.mv_size <= sizeof(v));
	memcpy(v, vv.mv_data, vv.mv_size);
	v[HDR + 7] ^= 0x10;
	raw_put(txn, dbi, k, 8, v, vv.mv_size);
	/* key 5: bad magic */
	key_be(5, k);
	assert_int_equal(mdb_get(txn, dbi, &kv, &vv), 0);
	memcpy(v, vv.mv_data, vv.mv_size);
	v[0] = 'X';
	raw_put(txn, dbi, k, 8, v, vv.mv_size);
	memcpy(bad_magic_copy, v, vv.mv_size);
	*bad_magic_len = vv.mv_size;
	/* key 7: truncated below the header */
	key_be(7, k);
	raw_put(txn, dbi, k, 8, "short", 5);
	/* a 3-byte key */
	raw_put(txn, dbi, "bad", 3, "whatever", 8);
	/* key 100: header length disagrees with the value size */
	key_be(9, k);
	assert_int_equal(mdb_get(txn, dbi, &kv, &vv), 0);
	memcpy(v, vv.mv_data, vv.mv_size);
	key_be(100, k);
	raw_put(txn, dbi, k, 8, v, vv.mv_size - 1);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void
test_spool_damaged_records_quarantined_rest_readable(void **state)
{
	struct fixture *fx = *state;
	const uint64_t good[] = {1, 2, 4, 6, 8, 9, 10};
	uint8_t bad_magic[4096];
	size_t bad_magic_len = 0;
	struct tl_spool_stats st;
	struct clog log;
	struct got g, q;
	struct tl_spool *sp;
	bool saw_magic = false;

	sp = open_spool(&fx->conf, 1, NULL);
	for (int i = 0; i < 10; i++)
		assert_int_equal(put_seeded(sp, 0, 200 + (uint32_t)i, (uint64_t)i), 0);
	tl_spool_close(sp);
	damage_spool(fx->dir, bad_magic, &bad_magic_len);

	/* Read-only (a tool on a live spool): damaged records are skipped, not moved. */
	sp = NULL;
	assert_int_equal(tl_spool_open(&fx->conf, 0, TL_SPOOL_RDONLY, NULL, NULL, &sp), 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.quarantined, 5);
	assert_int_equal(st.records, 7);
	assert_int_equal(st.quarantine_records, 0);
	got_init(&g, 32);
	read_all(sp, 0, &g);
	assert_int_equal(g.n, 7);
	assert_int_equal(tl_spool_ack(sp, 1), -EROFS);
	assert_int_equal(tl_spool_flush(sp, SEC), -EROFS);
	assert_null(tl_spool_buf_get(sp, 0));
	tl_spool_close(sp);
	got_fini(&g);

	clog_init(&log, 8);
	sp = open_spool(&fx->conf, 1, &log);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.quarantined, 5);
	assert_int_equal(st.quarantine_records, 5);
	assert_int_equal(st.records, 7);
	got_init(&g, 32);
	read_all(sp, 0, &g);
	assert_int_equal(g.n, 7);
	for (size_t i = 0; i < 7; i++) {
		assert_int_equal(g.keys[i], good[i]);
		check_seeded(g.data[i], g.len[i], good[i] - 1);
	}
	/* Raw bytes kept in quarantine. */
	got_init(&q, 32);
	assert_int_equal(tl_spool_read_quarantine(sp, 0, 100, collect, &q, NULL), 5);
	for (size_t i = 0; i < q.n; i++) {
		if (q.keys[i] == 5) {
			assert_int_equal(q.len[i], bad_magic_len);
			assert_memory_equal(q.data[i], bad_magic, bad_magic_len);
			saw_magic = true;
		}
	}
	assert_true(saw_magic);
	/* Keys continue after the highest key seen, even a damaged one. */
	assert_int_equal(put_seeded(sp, 0, 10, 1), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(log.n, 1);
	assert_int_equal(log.e[0].key, 101);
	tl_spool_close(sp);

	/* A second recovery finds nothing new. */
	sp = open_spool(&fx->conf, 0, NULL);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.quarantined, 0);
	assert_int_equal(st.quarantine_records, 5);
	assert_int_equal(st.records, 8);
	tl_spool_close(sp);
	got_fini(&g);
	got_fini(&q);
	clog_fini(&log);
}

/* ---- size ---- */

/* A record a reader cannot use is moved aside, byte for byte, and no longer pending. */
static void
test_spool_quarantine_by_reader_moves_record(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_stats st;
	struct got g, q;
	struct tl_spool *sp = open_spool(&fx->conf, 1, NULL);

	for (int i = 0; i < 5; i++)
		assert_int_equal(put_seeded(sp, 0, 3000 + (uint32_t)i, 70 + (uint64_t)i), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(tl_spool_quarantine(sp, 2), 0);
	assert_int_equal(tl_spool_quarantine(sp, 4), 0);
	assert_int_equal(tl_spool_quarantine(sp, 0), -EINVAL);
	assert_int_equal(tl_spool_quarantine(NULL, 1), -EINVAL);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 3);
	assert_int_equal(st.quarantined, 2);
	assert_int_equal(st.quarantine_records, 2);
	assert_int_equal(st.acked, 0);
	got_init(&g, 16);
	read_all(sp, 0, &g);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.keys[0], 1);
	assert_int_equal(g.keys[1], 3);
	assert_int_equal(g.keys[2], 5);
	got_init(&q, 16);
	assert_int_equal(tl_spool_read_quarantine(sp, 0, 16, collect, &q, NULL), 2);
	assert_int_equal(q.keys[0], 2);
	assert_int_equal(q.keys[1], 4);
	/* Quarantined as stored: the spool's record header, then the payload. */
	assert_int_equal(q.len[0], HDR + 3001);
	check_seeded(q.data[0] + HDR, 3001, 71);
	/* Survives a reopen, and the key is not reused; a reader-only spool cannot move
	 * records. */
	tl_spool_close(sp);
	{
		struct tl_spool *ro = NULL;

		assert_int_equal(tl_spool_open(&fx->conf, 0, TL_SPOOL_RDONLY, NULL, NULL, &ro), 0);
		assert_int_equal(tl_spool_quarantine(ro, 1), -EROFS);
		tl_spool_close(ro);
	}
	sp = open_spool(&fx->conf, 1, NULL);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 3);
	assert_int_equal(st.quarantine_records, 2);
	assert_int_equal(st.next_key, 6);
	got_fini(&g);
	got_fini(&q);
	tl_spool_close(sp);
}

static void
test_spool_map_grows_from_small_initial(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_stats st;
	struct got g;
	struct tl_spool *sp;

	sp = open_spool(&fx->conf, 1, NULL);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.map_size, 1 << 20);
	for (int i = 0; i < 64; i++)
		assert_int_equal(put_seeded(sp, 0, 64 << 10, (uint64_t)i), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_stats(sp, &st);
	assert_true(st.map_grows >= 2);
	assert_true(st.map_size >= (4 << 20));
	assert_true(st.map_size <= fx->conf.max_size);
	assert_int_equal(st.records, 64);
	assert_true(st.used_bytes >= 64 * (64 << 10));
	assert_int_equal(st.lost, 0);
	got_init(&g, 80);
	read_all(sp, 0, &g);
	assert_int_equal(g.n, 64);
	for (int i = 0; i < 64; i++)
		check_seeded(g.data[i], g.len[i], (uint64_t)i);
	got_fini(&g);
	tl_spool_close(sp);
}

static struct tl_spool_conf
small_conf(const struct fixture *fx, int policy)
{
	struct tl_spool_conf c = fx->conf;

	c.max_size = 4 << 20;
	c.high_water_pct = 50;
	c.policy = policy;
	return c;
}

static void
test_spool_full_backpressure_refuses_counted(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = small_conf(fx, TL_SPOOL_BACKPRESSURE);
	struct tl_spool_stats st;
	struct clog log;
	struct tl_spool_buf *b;
	struct tl_spool *sp;
	int ok = 0, rc = 0;

	clog_init(&log, 128);
	sp = open_spool(&c, 1, &log);
	for (int i = 0; i < 100; i++) {
		rc = put_seeded(sp, 0, 64 << 10, (uint64_t)i);
		if (rc != 0)
			break;
		ok++;
		assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	}
	assert_int_equal(rc, -ENOSPC);
	assert_true(ok >= 20 && ok < 32); /* 2 MiB high water / 68 KiB per record */
	tl_spool_stats(sp, &st);
	assert_int_equal(st.backpressure, 1);
	assert_int_equal(st.full, 1);
	assert_int_equal(st.high_water_hits, 1);
	assert_int_equal(st.records, ok);
	assert_int_equal(st.dropped_newest + st.dropped_oldest + st.lost, 0);
	assert_true(st.used_bytes <= st.high_water_bytes);
	assert_int_equal(log.n, ok);
	for (size_t i = 0; i < log.n; i++)
		assert_int_equal(log.e[i].status, 0);
	/* A refused buffer is still ours: refused again while full. */
	b = tl_spool_buf_get(sp, 0);
	assert_non_null(b);
	b->len = 100;
	assert_int_equal(tl_spool_buf_put(sp, 0, b), -ENOSPC);
	assert_int_equal(tl_spool_buf_put(sp, 0, b), -ENOSPC);
	/* Delivery frees room: accepted again. */
	for (int k = 1; k <= ok; k++)
		assert_int_equal(tl_spool_ack(sp, (uint64_t)k), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.full, 0);
	assert_int_equal(st.records, 0);
	assert_int_equal(st.backpressure, 3);
	assert_int_equal(tl_spool_buf_put(sp, 0, b), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 1);
	tl_spool_close(sp);
	clog_fini(&log);
}

static void
test_spool_full_drop_newest_drops_counted(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = small_conf(fx, TL_SPOOL_DROP_NEWEST);
	struct tl_spool_stats st;
	struct clog log;
	struct got g;
	struct tl_spool *sp;
	uint64_t committed = 0, dropped = 0;

	clog_init(&log, 128);
	sp = open_spool(&c, 1, &log);
	log.sp = NULL;
	for (int i = 0; i < 60; i++) {
		assert_int_equal(put_seeded(sp, 0, 64 << 10, (uint64_t)i), 0);
		if (i % 4 == 3)
			assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	}
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(log.n, 60);
	for (size_t i = 0; i < log.n; i++) {
		assert_int_equal(log.e[i].user, i);
		if (log.e[i].status == 0) {
			assert_int_equal(dropped, 0); /* the newest are the ones dropped */
			assert_int_equal(log.e[i].key, ++committed);
		} else {
			assert_int_equal(log.e[i].status, -ENOSPC);
			assert_int_equal(log.e[i].key, 0);
			dropped++;
		}
	}
	assert_true(committed >= 20 && dropped > 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.dropped_newest, dropped);
	assert_int_equal(st.dropped_oldest, 0);
	assert_int_equal(st.backpressure, 0);
	assert_int_equal(st.records, committed);
	assert_int_equal(st.full, 1);
	assert_int_equal(st.high_water_hits, 1);
	assert_true(st.used_bytes <= st.high_water_bytes);
	got_init(&g, 64);
	read_all(sp, 0, &g);
	assert_int_equal(g.n, committed);
	for (size_t i = 0; i < g.n; i++)
		check_seeded(g.data[i], g.len[i], i);
	got_fini(&g);
	tl_spool_close(sp);
	clog_fini(&log);
}

static void
test_spool_full_drop_oldest_evicts_counted(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = small_conf(fx, TL_SPOOL_DROP_OLDEST);
	struct tl_spool_stats st;
	struct clog log;
	struct got g;
	struct tl_spool *sp;

	clog_init(&log, 128);
	sp = open_spool(&c, 1, &log);
	log.sp = NULL;
	for (int i = 0; i < 60; i++) {
		assert_int_equal(put_seeded(sp, 0, 64 << 10, (uint64_t)i), 0);
		if (i % 4 == 3)
			assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	}
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(log.n, 60);
	for (size_t i = 0; i < log.n; i++) {
		assert_int_equal(log.e[i].status, 0);
		assert_int_equal(log.e[i].key, i + 1);
	}
	tl_spool_stats(sp, &st);
	assert_true(st.dropped_oldest > 0);
	assert_int_equal(st.dropped_newest, 0);
	assert_int_equal(st.records + st.dropped_oldest, 60);
	assert_true(st.high_water_hits >= 1);
	assert_true(st.used_bytes <= st.high_water_bytes);
	assert_true(st.map_size <= c.max_size);
	got_init(&g, 64);
	read_all(sp, 0, &g);
	assert_int_equal(g.n, st.records);
	/* What is left is the newest, contiguous up to the last key. */
	for (size_t i = 0; i < g.n; i++) {
		assert_int_equal(g.keys[i], st.dropped_oldest + 1 + i);
		check_seeded(g.data[i], g.len[i], g.keys[i] - 1);
	}
	assert_int_equal(g.keys[g.n - 1], 60);
	/* An ack of an evicted key is harmless. */
	assert_int_equal(tl_spool_ack(sp, 1), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.ack_unknown, 1);
	got_fini(&g);
	tl_spool_close(sp);
	clog_fini(&log);
}

/* ---- readers vs writer ---- */

struct parked {
	struct tl_spool *sp;
	sem_t inside, release;
	uint64_t seen;
	int rc;
};

static int
park_in_txn(void *arg, const struct tl_spool_rec *rec)
{
	struct parked *pk = arg;

	pk->seen++;
	if (pk->seen == 1) {
		sem_post(&pk->inside);
		sem_wait(&pk->release);
	}
	(void)rec;
	return 0;
}

static void *
parked_reader(void *arg)
{
	struct parked *pk = arg;

	pk->rc = tl_spool_read(pk->sp, 0, 1000, park_in_txn, pk, NULL);
	return NULL;
}

static void
start_parked(struct parked *pk, struct tl_spool *sp, pthread_t *th)
{
	memset(pk, 0, sizeof(*pk));
	pk->sp = sp;
	assert_int_equal(sem_init(&pk->inside, 0, 0), 0);
	assert_int_equal(sem_init(&pk->release, 0, 0), 0);
	assert_int_equal(pthread_create(th, NULL, parked_reader, pk), 0);
	assert_int_equal(sem_wait(&pk->inside), 0);
}

static void
stop_parked(struct parked *pk, pthread_t th)
{
	sem_post(&pk->release);
	pthread_join(th, NULL);
	sem_destroy(&pk->inside);
	sem_destroy(&pk->release);
}

static void
test_spool_reader_in_txn_writer_keeps_committing(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = fx->conf;
	struct tl_spool_stats st;
	struct parked pk;
	struct got g;
	pthread_t th;
	struct tl_spool *sp;

	c.initial_size = 16 << 20; /* no resize needed */
	sp = open_spool(&c, 1, NULL);
	for (int i = 0; i < 3; i++)
		assert_int_equal(put_seeded(sp, 0, 1000, (uint64_t)i), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	start_parked(&pk, sp, &th);
	/* The reader sits inside its read transaction; commits and deletes go on. */
	for (int i = 3; i < 40; i++) {
		assert_int_equal(put_seeded(sp, 0, 8000, (uint64_t)i), 0);
		assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	}
	assert_int_equal(tl_spool_ack(sp, 1), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 39);
	assert_int_equal(st.acked, 1);
	got_init(&g, 64);
	read_all(sp, 0, &g); /* a second reader at the same time */
	assert_int_equal(g.n, 39);
	stop_parked(&pk, th);
	/* The parked reader saw its snapshot: the 3 records that existed. */
	assert_int_equal(pk.rc, 3);
	assert_int_equal(pk.seen, 3);
	got_fini(&g);
	tl_spool_close(sp);
}

static void
test_spool_resize_waits_for_readers_then_completes(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = fx->conf;
	struct tl_spool_stats st;
	struct parked pk;
	pthread_t th;
	struct tl_spool *sp;

	c.buffers = 40; /* every record below can be handed over while the writer waits */
	sp = open_spool(&c, 1, NULL); /* 1 MiB map */
	assert_int_equal(put_seeded(sp, 0, 100, 0), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	start_parked(&pk, sp, &th);
	/* 2 MiB cannot fit in 1 MiB and the map cannot change under the reader. */
	for (int i = 1; i <= 32; i++)
		assert_int_equal(put_seeded(sp, 0, 64 << 10, (uint64_t)i), 0);
	assert_int_equal(tl_spool_flush(sp, 300 * MS), -ETIMEDOUT);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.map_grows, 0);
	assert_int_equal(st.lost, 0);
	stop_parked(&pk, th);
	assert_int_equal(pk.rc, 1);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_stats(sp, &st);
	assert_true(st.map_grows >= 1);
	assert_int_equal(st.records, 33);
	assert_int_equal(st.lost, 0);
	tl_spool_close(sp);
}

/* ---- writer failure ---- */

static void
test_spool_commit_failure_reported_sticky(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_stats st;
	struct clog log;
	struct tl_spool *sp;

	clog_init(&log, 8);
	sp = open_spool(&fx->conf, 1, &log);
	assert_int_equal(put_seeded(sp, 0, 100, 1), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	atomic_store(&commit_fail_rc, EIO);
	assert_int_equal(put_seeded(sp, 0, 100, 2), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), -EIO);
	atomic_store(&commit_fail_rc, 0);
	assert_int_equal(log.n, 2);
	assert_int_equal(log.e[0].status, 0);
	assert_int_equal(log.e[1].status, -EIO);
	assert_int_equal(log.e[1].key, 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.error, -EIO);
	assert_int_equal(st.lost, 1);
	assert_int_equal(st.records, 1);
	/* Sticky: the producer is told instead of losing more. */
	assert_int_equal(put_seeded(sp, 0, 100, 3), -EIO);
	tl_spool_close(sp);
	/* Nothing was damaged: the committed record is there after reopen. */
	sp = open_spool(&fx->conf, 0, NULL);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 1);
	assert_int_equal(st.error, 0);
	tl_spool_close(sp);
	clog_fini(&log);
}

/* ---- transaction hook, side data and state ---- */

#define HK_MAX 512
#define HK_META 16

struct hkent {
	uint64_t user;
	unsigned call; /* which hook call passed it (1-based) */
	uint32_t len, meta_len, meta_cap;
	uint8_t meta[HK_META];
};

/* What the transaction hook saw; written by the writer thread, read after a flush. */
struct hooklog {
	unsigned calls;
	size_t n;
	struct hkent e[HK_MAX];
	bool bad;         /* a buffer broke the contract (NULL meta, meta_len > meta_cap) */
	bool write_state; /* state "count" = records passed so far, "last" = last cookie */
	uint64_t seen;
	const uint8_t *big; /* also put big_len bytes under "big" */
	size_t big_len;
	int put_rc;       /* the last state put */
	unsigned fail_at; /* return fail_rc from this call (1-based); 0: never */
	int fail_rc;
	unsigned attempt[16]; /* tl_spool_txn_attempt() of the first calls */
	bool derive;          /* add one record per transaction: "derived:<n records>" */
	uint64_t derived_key[16];
	unsigned n_derived;
};

static int
hk_txn(void *arg, struct tl_spool_txn *txn, const struct tl_spool_buf *const *bufs, unsigned n)
{
	struct hooklog *h = arg;
	int rc = 0;

	h->calls++;
	if (n == 0 || bufs == NULL || txn == NULL)
		h->bad = true;
	if (h->calls <= 16)
		h->attempt[h->calls - 1] = tl_spool_txn_attempt(txn);
	if (h->derive && h->n_derived < 16) {
		char d[32];
		int dl = snprintf(d, sizeof(d), "derived:%u", n);

		rc = tl_spool_txn_put_record(
		        txn, 0, d, (uint32_t)dl, &h->derived_key[h->n_derived]);
		if (rc != 0)
			return rc;
		h->n_derived++;
	}
	for (unsigned i = 0; i < n; i++) {
		const struct tl_spool_buf *b = bufs[i];
		struct hkent *e;

		if (h->n == HK_MAX) {
			h->bad = true;
			break;
		}
		e = &h->e[h->n++];
		*e = (struct hkent){b->user, h->calls, b->len, b->meta_len, b->meta_cap, {0}};
		if (b->meta_len > b->meta_cap || (b->meta_cap > 0 && b->meta == NULL))
			h->bad = true;
		else if (b->meta_len > 0)
			memcpy(e->meta, b->meta, b->meta_len < HK_META ? b->meta_len : HK_META);
	}
	if (h->write_state) {
		h->seen += n;
		rc = tl_spool_txn_state_put(txn, "count", &h->seen, sizeof(h->seen));
		if (rc == 0)
			rc = tl_spool_txn_state_put(txn, "last", &bufs[n - 1]->user, 8);
	}
	if (rc == 0 && h->big != NULL)
		rc = tl_spool_txn_state_put(txn, "big", h->big, h->big_len);
	h->put_rc = rc;
	if (rc != 0)
		return rc;
	if (h->calls == h->fail_at)
		return h->fail_rc;
	return 0;
}

static void
set_hooks(struct tl_spool *sp, struct hooklog *h, uint32_t meta_size)
{
	struct tl_spool_hooks hk = {.meta_size = meta_size, .on_txn = hk_txn, .arg = h};

	assert_int_equal(tl_spool_set_hooks(sp, &hk), 0);
}

/* Put @p n bytes of seeded payload with @p meta_len bytes of side data derived from the
 * cookie. */
static int
put_with_meta(struct tl_spool *sp, unsigned prod, uint32_t n, uint64_t user, uint32_t meta_len,
        unsigned flags)
{
	struct tl_spool_buf *b = tl_spool_buf_get(sp, prod);
	int rc;

	assert_non_null(b);
	assert_int_equal(b->meta_len, 0);
	assert_true(meta_len <= b->meta_cap);
	fill(b->data, n, user);
	b->len = n;
	b->user = user;
	for (uint32_t i = 0; i < meta_len; i++)
		b->meta[i] = (uint8_t)(user * 7 + i);
	b->meta_len = meta_len;
	rc = tl_spool_buf_put_flags(sp, prod, b, flags);
	if (rc != 0)
		assert_int_equal(tl_spool_buf_release(sp, prod, b), 0);
	return rc;
}

static uint64_t
state_u64(struct tl_spool *sp, const char *name)
{
	void *v = NULL;
	size_t len = 99;
	uint64_t x;

	assert_int_equal(tl_spool_state_get(sp, name, &v, &len), 0);
	assert_non_null(v);
	assert_int_equal(len, 8);
	memcpy(&x, v, 8);
	free(v);
	return x;
}

static void
test_spool_hook_sees_txn_buffers_with_meta(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = fx->conf;
	struct hooklog *h = calloc(1, sizeof(*h));
	struct tl_spool_stats st;
	struct clog log;
	struct tl_spool *sp;

	assert_non_null(h);
	c.buffers = 16;
	clog_init(&log, 256);
	sp = open_spool(&c, 2, &log);
	log.hook_calls = &h->calls;
	set_hooks(sp, h, HK_META);
	/* Rounds of a few records from both producers, one flush per round: transactions of
	 * one to six records, meta from empty to full. */
	for (uint64_t round = 0, u = 0; round < 12; round++) {
		for (unsigned k = 0; k <= round % 6; k++, u++)
			assert_int_equal(put_with_meta(sp, (unsigned)(u % 2), 100 + (uint32_t)u, u,
			                         (uint32_t)(u % (HK_META + 1)), 0),
			        0);
		assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	}
	assert_false(h->bad);
	assert_int_equal(clog_count(&log), 42);
	/* Exactly the committed records, in callback order, each once. */
	assert_int_equal(h->n, log.n);
	for (size_t i = 0; i < log.n; i++) {
		struct hkent *e = &h->e[i];

		assert_int_equal(log.e[i].status, 0);
		assert_int_equal(e->user, log.e[i].user);
		/* Passed in the transaction whose commit the callback reports: no hook ran
		 * between the two. */
		assert_int_equal(e->call, log.e[i].hooks);
		assert_int_equal(e->len, 100 + e->user);
		assert_int_equal(e->meta_cap, HK_META);
		assert_int_equal(e->meta_len, e->user % (HK_META + 1));
		for (uint32_t j = 0; j < e->meta_len; j++)
			assert_int_equal(e->meta[j], (uint8_t)(e->user * 7 + j));
	}
	tl_spool_stats(sp, &st);
	/* One call per transaction that stored records, none for empty ones. */
	assert_int_equal(h->calls, st.commits);
	assert_int_equal(h->e[h->n - 1].call, h->calls);
	assert_true(h->calls >= 12);
	tl_spool_close(sp);
	clog_fini(&log);
	free(h);
}

/* A run of MORE records is invisible to the writer until it ends, then commits whole, in
 * one transaction, even past commit_bytes; tl_spool_publish() ends a run without a record;
 * close ends one left open. */
static void
test_spool_more_run_commits_in_one_txn(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = fx->conf;
	struct hooklog *h = calloc(1, sizeof(*h));
	struct clog log;
	struct tl_spool *sp;
	unsigned call;

	assert_non_null(h);
	c.buffers = 16;
	c.commit_bytes = 4096; /* smaller than the run: it must not split it */
	clog_init(&log, 256);
	sp = open_spool(&c, 1, &log);
	log.hook_calls = &h->calls;
	set_hooks(sp, h, HK_META);
	for (uint64_t u = 1; u <= 4; u++)
		assert_int_equal(put_with_meta(sp, 0, 3000, u, 0, TL_SPOOL_PUT_MORE), 0);
	/* nothing handed over yet: a flush has nothing to wait for, nothing committed */
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(clog_count(&log), 0);
	assert_int_equal(h->n, 0);
	assert_int_equal(put_with_meta(sp, 0, 3000, 5, 0, 0), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(clog_count(&log), 5);
	assert_int_equal(h->n, 5);
	call = h->e[0].call;
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(h->e[i].user, i + 1);
		assert_int_equal(h->e[i].call, call);
		assert_int_equal(log.e[i].status, 0);
	}
	/* ended by publish */
	for (uint64_t u = 6; u <= 8; u++)
		assert_int_equal(put_with_meta(sp, 0, 3000, u, 0, TL_SPOOL_PUT_MORE), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(clog_count(&log), 5);
	assert_int_equal(tl_spool_publish(sp, 0), 0);
	assert_int_equal(tl_spool_publish(sp, 0), 0); /* no run: nothing */
	assert_int_equal(tl_spool_publish(sp, 1), -EINVAL);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(clog_count(&log), 8);
	assert_int_equal(h->e[5].call, h->e[7].call);
	assert_true(h->e[5].call > call);
	/* left open at close: stored all the same */
	assert_int_equal(put_with_meta(sp, 0, 3000, 9, 0, TL_SPOOL_PUT_MORE), 0);
	assert_int_equal(put_with_meta(sp, 0, 3000, 10, 0, TL_SPOOL_PUT_MORE), 0);
	assert_false(h->bad);
	tl_spool_close(sp);
	assert_int_equal(clog_count(&log), 10);
	assert_int_equal(h->e[8].call, h->e[9].call);
	clog_fini(&log);
	free(h);
}

static void
test_spool_hook_state_survives_reopen_and_rdonly(void **state)
{
	struct fixture *fx = *state;
	struct hooklog *h = calloc(1, sizeof(*h));
	struct tl_spool_stats st;
	struct tl_spool *sp;
	void *v = (void *)&v;
	size_t len = 99;

	assert_non_null(h);
	h->write_state = true;
	sp = open_spool(&fx->conf, 1, NULL);
	set_hooks(sp, h, 0);
	/* Nothing stored yet: absent, not an error. */
	assert_int_equal(tl_spool_state_get(sp, "count", &v, &len), 0);
	assert_null(v);
	assert_int_equal(len, 0);
	for (uint64_t i = 0; i < 9; i++) {
		assert_int_equal(put_with_meta(sp, 0, 500, 40 + i, 0, 0), 0);
		if (i % 3 == 2)
			assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	}
	assert_int_equal(h->put_rc, 0);
	assert_int_equal(state_u64(sp, "count"), 9);
	assert_int_equal(state_u64(sp, "last"), 48);
	/* State is not records: none of it shows in the counts or the reads. */
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 9);
	tl_spool_close(sp);

	sp = open_spool(&fx->conf, 1, NULL);
	assert_int_equal(state_u64(sp, "count"), 9);
	assert_int_equal(state_u64(sp, "last"), 48);
	tl_spool_close(sp);

	sp = NULL;
	assert_int_equal(tl_spool_open(&fx->conf, 0, TL_SPOOL_RDONLY, NULL, NULL, &sp), 0);
	assert_int_equal(state_u64(sp, "count"), 9);
	assert_int_equal(state_u64(sp, "last"), 48);
	assert_int_equal(tl_spool_state_get(sp, "nothing here", &v, &len), 0);
	assert_null(v);
	assert_int_equal(len, 0);
	tl_spool_close(sp);
	free(h);
}

static void
test_spool_state_get_bad_args_einval(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool *sp = open_spool(&fx->conf, 0, NULL);
	char name[TL_SPOOL_STATE_NAME_MAX + 2];
	void *v = (void *)&v;
	size_t len = 99;

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	assert_int_equal(tl_spool_state_get(NULL, "a", &v, &len), -EINVAL);
	assert_null(v);
	assert_int_equal(len, 0);
	assert_int_equal(tl_spool_state_get(sp, NULL, &v, &len), -EINVAL);
	assert_int_equal(tl_spool_state_get(sp, "", &v, &len), -EINVAL);
	assert_int_equal(tl_spool_state_get(sp, name, &v, &len), -EINVAL); /* 65 bytes */
	assert_int_equal(tl_spool_state_get(sp, "a", NULL, &len), -EINVAL);
	assert_int_equal(tl_spool_state_get(sp, "a", &v, NULL), -EINVAL);
	name[TL_SPOOL_STATE_NAME_MAX] = '\0';
	assert_int_equal(tl_spool_state_get(sp, name, &v, &len), 0); /* 64: fine, absent */
	assert_null(v);
	tl_spool_close(sp);
}

/* Raw LMDB: a spool as written before the `state` database existed. */
static void
make_spool_without_state(const char *dir)
{
	uint32_t fmt = 1; /* FORMAT_VERSION, little-endian on this host */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi rec, quar, meta;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
	assert_int_equal(mdb_env_open(env, dir, MDB_NOSYNC, 0640), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "records", MDB_CREATE, &rec), 0);
	assert_int_equal(mdb_dbi_open(txn, "quarantine", MDB_CREATE, &quar), 0);
	assert_int_equal(mdb_dbi_open(txn, "meta", MDB_CREATE, &meta), 0);
	raw_put(txn, meta, "format", 6, &fmt, 4);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void
test_spool_state_old_spool_rdonly_absent_rw_created(void **state)
{
	struct fixture *fx = *state;
	struct hooklog *h = calloc(1, sizeof(*h));
	struct tl_spool *sp = NULL;
	void *v = (void *)&v;
	size_t len = 99;

	assert_non_null(h);
	make_spool_without_state(fx->dir);
	assert_int_equal(tl_spool_open(&fx->conf, 0, TL_SPOOL_RDONLY, NULL, NULL, &sp), 0);
	assert_int_equal(tl_spool_state_get(sp, "count", &v, &len), 0);
	assert_null(v);
	assert_int_equal(len, 0);
	tl_spool_close(sp);
	/* The first read-write open adds it. */
	h->write_state = true;
	sp = open_spool(&fx->conf, 1, NULL);
	set_hooks(sp, h, 0);
	assert_int_equal(put_with_meta(sp, 0, 10, 5, 0, 0), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_close(sp);
	sp = NULL;
	assert_int_equal(tl_spool_open(&fx->conf, 0, TL_SPOOL_RDONLY, NULL, NULL, &sp), 0);
	assert_int_equal(state_u64(sp, "count"), 1);
	tl_spool_close(sp);
	free(h);
}

static void
test_spool_hook_error_fails_writer_nothing_stored(void **state)
{
	struct fixture *fx = *state;
	struct hooklog *h = calloc(1, sizeof(*h));
	struct tl_spool_stats st;
	struct clog log;
	struct got g;
	struct tl_spool *sp;

	assert_non_null(h);
	h->write_state = true;
	h->fail_at = 2;
	h->fail_rc = -EIO;
	clog_init(&log, 16);
	sp = open_spool(&fx->conf, 1, &log);
	set_hooks(sp, h, 8);
	for (uint64_t i = 0; i < 3; i++)
		assert_int_equal(put_with_meta(sp, 0, 200, i, 8, 0), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	/* The second transaction: its hook wrote state, then failed. */
	for (uint64_t i = 3; i < 7; i++)
		assert_int_equal(put_with_meta(sp, 0, 200, i, 8, 0), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), -EIO);
	assert_int_equal(h->calls, 2);
	assert_int_equal(h->put_rc, 0);
	assert_int_equal(clog_count(&log), 7);
	for (size_t i = 0; i < 7; i++) {
		assert_int_equal(log.e[i].user, i);
		assert_int_equal(log.e[i].status, i < 3 ? 0 : -EIO);
		if (i >= 3)
			assert_int_equal(log.e[i].key, 0);
	}
	tl_spool_stats(sp, &st);
	assert_int_equal(st.error, -EIO);
	assert_int_equal(tl_spool_admit(sp), -EIO);
	assert_int_equal(st.lost, 4);
	assert_int_equal(st.records, 3);
	assert_int_equal(st.commits, 1);
	/* Sticky, FORCE or not; the hook is not called again. */
	assert_int_equal(put_with_meta(sp, 0, 10, 9, 0, 0), -EIO);
	assert_int_equal(put_with_meta(sp, 0, 10, 9, 0, TL_SPOOL_PUT_FORCE), -EIO);
	/* Neither the records nor the state of the failed transaction. */
	assert_int_equal(state_u64(sp, "count"), 3);
	assert_int_equal(state_u64(sp, "last"), 2);
	tl_spool_close(sp);
	assert_int_equal(h->calls, 2);

	sp = open_spool(&fx->conf, 0, NULL);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 3);
	assert_int_equal(st.next_key, 4);
	assert_int_equal(st.error, 0);
	got_init(&g, 16);
	read_all(sp, 0, &g);
	assert_int_equal(g.n, 3);
	for (size_t i = 0; i < 3; i++)
		check_seeded(g.data[i], g.len[i], i);
	assert_int_equal(state_u64(sp, "count"), 3);
	assert_int_equal(state_u64(sp, "last"), 2);
	got_fini(&g);
	tl_spool_close(sp);
	clog_fini(&log);
	free(h);
}

static void
test_spool_set_hooks_misuse_rejected(void **state)
{
	struct fixture *fx = *state;
	struct hooklog *h = calloc(1, sizeof(*h));
	struct tl_spool_hooks hk = {.meta_size = 8, .on_txn = hk_txn, .arg = h};
	struct tl_spool_buf *b;
	struct tl_spool *sp;

	assert_non_null(h);
	assert_int_equal(tl_spool_set_hooks(NULL, &hk), -EINVAL);
	/* After a producer took a buffer. */
	sp = open_spool(&fx->conf, 2, NULL);
	assert_int_equal(tl_spool_set_hooks(sp, NULL), -EINVAL);
	b = tl_spool_buf_get(sp, 1);
	assert_non_null(b);
	assert_null(b->meta);
	assert_int_equal(b->meta_cap, 0);
	assert_int_equal(tl_spool_set_hooks(sp, &hk), -EBUSY);
	assert_int_equal(tl_spool_buf_release(sp, 1, b), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	/* Even once every buffer is back: the first get decides. */
	assert_int_equal(tl_spool_set_hooks(sp, &hk), -EBUSY);
	/* The spool works on without hooks; no side data, a meta_len is refused. */
	b = tl_spool_buf_get(sp, 0);
	assert_non_null(b);
	assert_null(b->meta);
	b->len = 3;
	memcpy(b->data, "abc", 3);
	b->meta_len = 1;
	assert_int_equal(tl_spool_buf_put(sp, 0, b), -EINVAL);
	b->meta_len = 0;
	assert_int_equal(tl_spool_buf_put(sp, 0, b), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(h->calls, 0);
	tl_spool_close(sp);

	/* Too much side data; then once is fine, twice is not. */
	sp = open_spool(&fx->conf, 1, NULL);
	hk.meta_size = (1u << 20) + 1;
	assert_int_equal(tl_spool_set_hooks(sp, &hk), -EINVAL);
	hk.meta_size = 1u << 20; /* the limit itself is allowed */
	assert_int_equal(tl_spool_set_hooks(sp, &hk), 0);
	hk.meta_size = 8;
	assert_int_equal(tl_spool_set_hooks(sp, &hk), -EBUSY);
	b = tl_spool_buf_get(sp, 0);
	assert_non_null(b);
	assert_non_null(b->meta);
	assert_int_equal(b->meta_cap, 1u << 20);
	assert_int_equal(b->meta_len, 0);
	assert_int_equal((uintptr_t)b->meta % 64, 0);
	memset(b->meta, 0x5a, b->meta_cap); /* all of it is ours (ASan checks) */
	b->meta_len = b->meta_cap;
	assert_int_equal(tl_spool_buf_put(sp, 0, b), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(h->calls, 1);
	assert_int_equal(h->e[0].meta_len, 1u << 20);
	assert_false(h->bad);
	assert_int_equal(h->e[0].meta[HK_META - 1], 0x5a);
	tl_spool_close(sp);

	/* Read-only: no writer, no hooks. */
	sp = NULL;
	assert_int_equal(tl_spool_open(&fx->conf, 0, TL_SPOOL_RDONLY, NULL, NULL, &sp), 0);
	hk.meta_size = 0;
	assert_int_equal(tl_spool_set_hooks(sp, &hk), -EINVAL);
	tl_spool_close(sp);
	free(h);
}

static void
test_spool_meta_len_reset_on_get_bounded_by_cap(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = fx->conf;
	struct hooklog *h = calloc(1, sizeof(*h));
	struct tl_spool_buf *a, *b;
	struct tl_spool *sp;

	assert_non_null(h);
	c.buffers = 2;
	sp = open_spool(&c, 1, NULL);
	set_hooks(sp, h, 12);
	a = tl_spool_buf_get(sp, 0);
	b = tl_spool_buf_get(sp, 0);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a->meta, b->meta);
	assert_int_equal(a->meta_cap, 12);
	a->len = 1;
	a->meta_len = 13;
	assert_int_equal(tl_spool_buf_put(sp, 0, a), -EINVAL);
	assert_int_equal(tl_spool_buf_put_flags(sp, 0, a, TL_SPOOL_PUT_FORCE), -EINVAL);
	a->meta_len = 12;
	memset(a->meta, 1, 12);
	assert_int_equal(tl_spool_buf_put(sp, 0, a), 0);
	b->meta_len = 5;
	assert_int_equal(tl_spool_buf_release(sp, 0, b), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	/* Both back in the pool (the pool is 2): whatever the last holder left, 0 now. */
	a = tl_spool_buf_get(sp, 0);
	b = tl_spool_buf_get(sp, 0);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(a->meta_len, 0);
	assert_int_equal(b->meta_len, 0);
	assert_int_equal(a->len, 0);
	assert_int_equal(h->calls, 1);
	assert_int_equal(h->n, 1); /* the released one never reached the hook */
	assert_int_equal(h->e[0].meta_len, 12);
	assert_int_equal(h->e[0].meta[11], 1);
	tl_spool_close(sp);
	free(h);
}

/* Every state put error, from inside a hook. */
struct badput {
	int rc[8];
	unsigned calls;
};

static int
hk_bad_puts(void *arg, struct tl_spool_txn *txn, const struct tl_spool_buf *const *bufs, unsigned n)
{
	struct badput *bp = arg;
	char name[TL_SPOOL_STATE_NAME_MAX + 2];

	(void)bufs;
	(void)n;
	bp->calls++;
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	bp->rc[0] = tl_spool_txn_state_put(txn, NULL, "x", 1);
	bp->rc[1] = tl_spool_txn_state_put(txn, "", "x", 1);
	bp->rc[2] = tl_spool_txn_state_put(txn, name, "x", 1); /* 65 bytes */
	bp->rc[3] = tl_spool_txn_state_put(NULL, "a", "x", 1);
	bp->rc[4] = tl_spool_txn_state_put(txn, "a", NULL, 1);
	name[TL_SPOOL_STATE_NAME_MAX] = '\0';
	bp->rc[5] = tl_spool_txn_state_put(txn, name, "x", 1); /* 64 bytes: fine */
	bp->rc[6] = tl_spool_txn_state_put(txn, "empty", NULL, 0);
	bp->rc[7] = tl_spool_txn_state_put(txn, "a", "first", 5);
	if (bp->rc[7] == 0)
		bp->rc[7] = tl_spool_txn_state_put(txn, "a", "second", 6); /* replaces */
	return 0;
}

static void
test_spool_state_put_bad_name_einval(void **state)
{
	struct fixture *fx = *state;
	struct badput bp = {{0}};
	struct tl_spool_hooks hk = {.on_txn = hk_bad_puts, .arg = &bp};
	char name[TL_SPOOL_STATE_NAME_MAX + 1];
	struct tl_spool *sp = open_spool(&fx->conf, 1, NULL);
	void *v;
	size_t len;

	assert_int_equal(tl_spool_set_hooks(sp, &hk), 0);
	assert_int_equal(put_seeded(sp, 0, 10, 1), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(bp.calls, 1);
	for (int i = 0; i < 5; i++)
		assert_int_equal(bp.rc[i], -EINVAL);
	assert_int_equal(bp.rc[5], 0);
	assert_int_equal(bp.rc[6], 0);
	assert_int_equal(bp.rc[7], 0);
	/* A refused put leaves the transaction usable: the rest committed. */
	memset(name, 'n', TL_SPOOL_STATE_NAME_MAX);
	name[TL_SPOOL_STATE_NAME_MAX] = '\0';
	assert_int_equal(tl_spool_state_get(sp, name, &v, &len), 0);
	assert_int_equal(len, 1);
	assert_memory_equal(v, "x", 1);
	free(v);
	/* Present but empty is not absent. */
	assert_int_equal(tl_spool_state_get(sp, "empty", &v, &len), 0);
	assert_non_null(v);
	assert_int_equal(len, 0);
	free(v);
	assert_int_equal(tl_spool_state_get(sp, "a", &v, &len), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(v, "second", 6);
	free(v);
	tl_spool_close(sp);
}

/* States named by a prefix: written and deleted by the hook, read back in name order. */
struct scanhook {
	unsigned call;
};

static int
hk_scan(void *arg, struct tl_spool_txn *txn, const struct tl_spool_buf *const *bufs, unsigned n)
{
	struct scanhook *h = arg;
	int rc = 0;

	(void)bufs;
	(void)n;
	if (h->call++ == 0) {
		rc = tl_spool_txn_state_put(txn, "ids.0000000000000002", "b", 1);
		rc = rc ?: tl_spool_txn_state_put(txn, "ids.0000000000000001", "a", 1);
		rc = rc ?: tl_spool_txn_state_put(txn, "idt", "x", 1);
		rc = rc ?: tl_spool_txn_state_put(txn, "ids.0000000000000003", "cc", 2);
	} else {
		rc = tl_spool_txn_state_del(txn, "ids.0000000000000002");
		/* Absent: nothing to do. */
		rc = rc ?: tl_spool_txn_state_del(txn, "ids.0000000000000009");
	}
	return rc;
}

struct scanned {
	unsigned n, stop_after;
	char names[8][TL_SPOOL_STATE_NAME_MAX + 1];
	size_t len[8];
};

static int
collect_state(void *arg, const char *name, const void *val, size_t len)
{
	struct scanned *s = arg;

	(void)val;
	snprintf(s->names[s->n], sizeof(s->names[s->n]), "%s", name);
	s->len[s->n++] = len;
	return s->stop_after && s->n == s->stop_after;
}

static void
test_spool_state_scan_prefix_and_delete(void **state)
{
	struct fixture *fx = *state;
	struct scanhook h = {0};
	struct tl_spool_hooks hk = {.on_txn = hk_scan, .arg = &h};
	struct tl_spool *sp = open_spool(&fx->conf, 1, NULL);
	struct scanned sc;

	assert_int_equal(tl_spool_set_hooks(sp, &hk), 0);
	assert_int_equal(tl_spool_kick_wait(sp, tl_spool_kick(sp), 5 * SEC), 0);
	memset(&sc, 0, sizeof(sc));
	assert_int_equal(tl_spool_state_scan(sp, "ids.", collect_state, &sc), 3);
	assert_string_equal(sc.names[0], "ids.0000000000000001");
	assert_string_equal(sc.names[1], "ids.0000000000000002");
	assert_string_equal(sc.names[2], "ids.0000000000000003");
	assert_int_equal(sc.len[2], 2);
	memset(&sc, 0, sizeof(sc));
	sc.stop_after = 1;
	assert_int_equal(tl_spool_state_scan(sp, "ids.", collect_state, &sc), 1);
	assert_int_equal(tl_spool_kick_wait(sp, tl_spool_kick(sp), 5 * SEC), 0);
	tl_spool_close(sp);
	sp = open_spool(&fx->conf, 1, NULL);
	memset(&sc, 0, sizeof(sc));
	assert_int_equal(tl_spool_state_scan(sp, "ids.", collect_state, &sc), 2);
	assert_string_equal(sc.names[0], "ids.0000000000000001");
	assert_string_equal(sc.names[1], "ids.0000000000000003");
	assert_int_equal(tl_spool_state_scan(sp, "", collect_state, &sc), -EINVAL);
	assert_int_equal(tl_spool_state_scan(sp, "ids.", NULL, &sc), -EINVAL);
	assert_int_equal(tl_spool_txn_state_del(NULL, "x"), -EINVAL);
	tl_spool_close(sp);
}

/* Kicked transactions run the hook without records; kicks coalesce. */
struct kicklog {
	unsigned empty_calls;
	uint64_t count;
};

static int
hk_kick(void *arg, struct tl_spool_txn *txn, const struct tl_spool_buf *const *bufs, unsigned n)
{
	struct kicklog *k = arg;

	(void)bufs;
	k->empty_calls += n == 0;
	k->count++;
	return tl_spool_txn_state_put(txn, "kicked", &k->count, sizeof(k->count));
}

static void
test_spool_kick_runs_hook_without_records(void **state)
{
	struct fixture *fx = *state;
	struct kicklog k = {0};
	struct tl_spool_hooks hk = {.on_txn = hk_kick, .arg = &k};
	struct tl_spool *sp = open_spool(&fx->conf, 1, NULL), *plain;
	struct tl_spool_stats st;
	uint64_t n1, n2;

	assert_int_equal(tl_spool_set_hooks(sp, &hk), 0);
	n1 = tl_spool_kick(sp);
	assert_true(n1 > 0);
	assert_int_equal(tl_spool_kick_wait(sp, n1, 5 * SEC), 0);
	assert_true(k.empty_calls >= 1);
	assert_int_equal(state_u64(sp, "kicked"), k.count);
	n2 = tl_spool_kick(sp);
	assert_true(n2 > n1);
	assert_int_equal(tl_spool_kick_wait(sp, n2, 5 * SEC), 0);
	assert_true(k.count >= 2);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.records, 0);
	assert_int_equal(tl_spool_kick_wait(sp, 0, SEC), -EINVAL);
	assert_int_equal(tl_spool_kick(NULL), 0);
	tl_spool_close(sp);
	/* Without a hook a kick is never answered: the wait says so, the writer idles. */
	rm_spool(fx->conf.path);
	plain = open_spool(&fx->conf, 1, NULL);
	n1 = tl_spool_kick(plain);
	assert_int_equal(tl_spool_kick_wait(plain, n1, 50000000ull), -ETIMEDOUT);
	tl_spool_close(plain);
}

/* Records the hook adds commit with the producers' records and read like them. */
static void
test_spool_hook_adds_records_in_same_txn(void **state)
{
	struct fixture *fx = *state;
	struct hooklog *h = calloc(1, sizeof(*h));
	struct clog log;
	struct got g;
	struct tl_spool *sp;
	struct tl_spool_txn *none = NULL;

	assert_non_null(h);
	h->derive = true;
	clog_init(&log, 16);
	sp = open_spool(&fx->conf, 2, &log);
	set_hooks(sp, h, 0);
	assert_int_equal(put_with_meta(sp, 0, 100, 1, 0, 0), 0);
	assert_int_equal(put_with_meta(sp, 1, 200, 2, 0, 0), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(put_with_meta(sp, 1, 300, 3, 0, 0), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_false(h->bad);
	assert_int_equal(h->n_derived, h->calls);
	/* Only the producers' records are called back. */
	assert_int_equal(log.n, 3);
	tl_spool_close(sp);
	/* After a reopen: every record, the derived ones after the records they follow. */
	sp = open_spool(&fx->conf, 2, NULL);
	got_init(&g, 16);
	read_all(sp, 1, &g);
	assert_int_equal(g.n, 3 + h->n_derived);
	for (unsigned i = 0; i < h->n_derived; i++) {
		size_t k = 0;

		while (k < g.n && g.keys[k] != h->derived_key[i])
			k++;
		assert_true(k < g.n);
		assert_true(k > 0);
		assert_true(g.len[k] >= 9);
		assert_memory_equal(g.data[k], "derived:", 8);
		assert_int_equal(g.producer[k], 0);
	}
	assert_int_equal(g.keys[g.n - 1], h->derived_key[h->n_derived - 1]);
	got_fini(&g);
	/* Keys are never reused: the next record comes after the derived ones. */
	assert_int_equal(put_seeded(sp, 0, 10, 9), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	got_init(&g, 16);
	read_all(sp, h->derived_key[h->n_derived - 1] + 1, &g);
	assert_int_equal(g.n, 1);
	got_fini(&g);
	assert_int_equal(tl_spool_txn_attempt(NULL), 0);
	assert_int_equal(tl_spool_txn_put_record(none, 0, "x", 1, NULL), -EINVAL);
	tl_spool_close(sp);
	clog_fini(&log);
	free(h);
}

/* The hook's state needs a bigger map: grown and retried like a record that did not fit. */
static void
test_spool_hook_state_map_full_grows_and_retries(void **state)
{
	struct fixture *fx = *state;
	struct hooklog *h = calloc(1, sizeof(*h));
	size_t big_len = 3 << 20;
	uint8_t *big = malloc(big_len);
	struct tl_spool_stats st;
	struct clog log;
	struct tl_spool *sp;
	void *v;
	size_t len;

	assert_non_null(h);
	assert_non_null(big);
	fill(big, (uint32_t)big_len, 77);
	h->big = big;
	h->big_len = big_len;
	clog_init(&log, 8);
	sp = open_spool(&fx->conf, 1, &log); /* 1 MiB map, 64 MiB max */
	set_hooks(sp, h, 0);
	assert_int_equal(put_with_meta(sp, 0, 1000, 1, 0, 0), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(log.n, 1);
	assert_int_equal(log.e[0].status, 0);
	assert_int_equal(log.e[0].key, 1);
	/* Called again in every retried transaction, with the same record, and told so. */
	assert_true(h->calls >= 2);
	for (unsigned i = 0; i < h->calls && i < 16; i++)
		assert_int_equal(h->attempt[i], i);
	for (size_t i = 0; i < h->n; i++)
		assert_int_equal(h->e[i].user, 1);
	assert_int_equal(h->put_rc, 0);
	tl_spool_stats(sp, &st);
	assert_true(st.map_grows >= 1);
	assert_int_equal(st.error, 0);
	assert_int_equal(st.lost, 0);
	assert_true(st.used_bytes >= big_len); /* state pages count as used */
	assert_int_equal(tl_spool_state_get(sp, "big", &v, &len), 0);
	assert_int_equal(len, big_len);
	assert_memory_equal(v, big, big_len);
	free(v);
	tl_spool_close(sp);
	clog_fini(&log);
	free(big);
	free(h);
}

static struct tl_spool_conf small_conf(const struct fixture *fx, int policy);

/* State that can never fit at max_size: the records are dropped, the writer lives on. */
static void
test_spool_hook_state_never_fits_drop_newest_not_fatal(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = small_conf(fx, TL_SPOOL_DROP_NEWEST);
	struct hooklog *h = calloc(1, sizeof(*h));
	size_t big_len = 5 << 20; /* > max_size */
	uint8_t *big = calloc(1, big_len);
	struct tl_spool_stats st;
	struct clog log;
	struct tl_spool *sp;
	void *v = NULL;
	size_t len = 0;

	assert_non_null(h);
	assert_non_null(big);
	h->big = big;
	h->big_len = big_len;
	clog_init(&log, 8);
	sp = open_spool(&c, 1, &log);
	set_hooks(sp, h, 0);
	assert_int_equal(put_with_meta(sp, 0, 1000, 1, 0, 0), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(h->put_rc, -ENOSPC);
	assert_int_equal(log.n, 1);
	assert_int_equal(log.e[0].status, -ENOSPC);
	assert_int_equal(log.e[0].key, 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.error, 0);
	assert_int_equal(st.dropped_newest, 1);
	assert_int_equal(st.records, 0);
	assert_int_equal(st.map_size, c.max_size);
	assert_int_equal(tl_spool_state_get(sp, "big", &v, &len), 0);
	assert_null(v);
	/* A hook that fits again works again. */
	h->big = NULL;
	h->write_state = true;
	assert_int_equal(put_with_meta(sp, 0, 1000, 2, 0, 0), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(log.n, 2);
	assert_int_equal(log.e[1].status, 0);
	assert_int_equal(state_u64(sp, "last"), 2);
	tl_spool_close(sp);
	clog_fini(&log);
	free(big);
	free(h);
}

/* ---- FORCE puts ---- */

static void
test_spool_force_put_accepted_while_full_backpressure(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c;
	struct tl_spool_stats st;
	struct clog log;
	struct got g;
	struct tl_spool_buf *b;
	struct tl_spool *sp;
	uint8_t *p = malloc(64 << 10);
	int ok = 0, rc = 0;

	assert_non_null(p);
	c = small_conf(fx, TL_SPOOL_BACKPRESSURE);
	clog_init(&log, 128);
	sp = open_spool(&c, 1, &log);
	assert_int_equal(tl_spool_admit(sp), 0);
	assert_int_equal(tl_spool_admit(NULL), -EINVAL);
	/* As in test_spool_full_backpressure_refuses_counted: up to the mark. */
	for (int i = 0; i < 100; i++) {
		rc = put_seeded(sp, 0, 64 << 10, (uint64_t)i);
		if (rc != 0)
			break;
		ok++;
		assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	}
	assert_int_equal(rc, -ENOSPC);
	assert_int_equal(tl_spool_admit(sp), -ENOSPC);
	b = tl_spool_buf_get(sp, 0);
	assert_non_null(b);
	b->len = 100;
	fill(b->data, 100, 500);
	b->user = 500;
	assert_int_equal(tl_spool_buf_put(sp, 0, b), -ENOSPC);
	assert_int_equal(tl_spool_buf_put_flags(sp, 0, b, 0), -ENOSPC);
	assert_int_equal(tl_spool_buf_put_flags(sp, 0, b, 0x4), -EINVAL);
	assert_int_equal(tl_spool_buf_put_flags(sp, 0, b, TL_SPOOL_PUT_FORCE), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.backpressure, 3); /* the two plain refusals and the fill's last */
	assert_int_equal(st.records, ok + 1);
	assert_int_equal(st.full, 1);
	assert_int_equal(st.lost, 0);
	assert_int_equal(log.n, ok + 1);
	assert_int_equal(log.e[ok].user, 500);
	assert_int_equal(log.e[ok].status, 0);
	assert_int_equal(log.e[ok].key, ok + 1);
	assert_int_equal(log.e[ok].readable, 1);

	/* FORCE records go past the mark until the map is full at max_size: then
	 * -ENOSPC, counted lost, and the writer is not stalled. */
	for (int i = 0; i < 100 && log.e[log.n - 1].status == 0; i++) {
		fill(p, 64 << 10, 600 + (uint64_t)i);
		assert_int_equal(
		        try_put_flags(sp, 0, p, 64 << 10, 600 + (uint64_t)i, TL_SPOOL_PUT_FORCE),
		        0);
		assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	}
	assert_int_equal(log.e[log.n - 1].status, -ENOSPC);
	assert_int_equal(log.e[log.n - 1].key, 0);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.lost, 1);
	assert_int_equal(st.dropped_newest, 0);
	assert_int_equal(st.error, 0);
	assert_int_equal(st.map_size, c.max_size);
	assert_true(st.used_bytes > st.high_water_bytes);
	assert_int_equal(st.records, log.n - 1);
	assert_true(st.records > (uint64_t)ok + 10); /* well past the mark */
	got_init(&g, 128);
	read_all(sp, 0, &g);
	assert_int_equal(g.n, st.records);
	for (size_t i = 0; i < g.n; i++) {
		assert_int_equal(g.keys[i], i + 1);
		check_seeded(g.data[i], g.len[i], log.e[i].user);
	}
	/* Room again after delivery: FORCE stored, plain still refused while full. */
	for (uint64_t k = 1; k <= 10; k++)
		assert_int_equal(tl_spool_ack(sp, k), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	fill(p, 64 << 10, 999);
	assert_int_equal(try_put_flags(sp, 0, p, 64 << 10, 999, TL_SPOOL_PUT_FORCE), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(log.e[log.n - 1].user, 999);
	assert_int_equal(log.e[log.n - 1].status, 0);
	assert_int_equal(put_seeded(sp, 0, 10, 1000), -ENOSPC);
	got_fini(&g);
	tl_spool_close(sp);
	clog_fini(&log);
	free(p);
}

static void
test_spool_force_put_drop_newest_stored_not_dropped(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = small_conf(fx, TL_SPOOL_DROP_NEWEST);
	struct hooklog *h = calloc(1, sizeof(*h));
	struct tl_spool_stats st;
	struct clog log;
	struct tl_spool *sp;
	uint64_t u = 0, dropped;
	size_t forced;

	assert_non_null(h);
	clog_init(&log, 256);
	sp = open_spool(&c, 1, &log);
	log.sp = NULL;
	set_hooks(sp, h, 8);
	/* Plain records until the policy drops one. */
	while (log.n == 0 || log.e[log.n - 1].status == 0) {
		assert_true(u < 100);
		assert_int_equal(put_with_meta(sp, 0, 64 << 10, u++, 8, 0), 0);
		assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	}
	assert_int_equal(log.e[log.n - 1].status, -ENOSPC);
	tl_spool_stats(sp, &st);
	dropped = st.dropped_newest;
	assert_int_equal(dropped, 1);
	/* FORCE ones are stored over the mark, a plain one between them still dropped. */
	forced = log.n;
	assert_int_equal(put_with_meta(sp, 0, 64 << 10, 1000, 8, TL_SPOOL_PUT_FORCE), 0);
	assert_int_equal(put_with_meta(sp, 0, 64 << 10, 1001, 8, 0), 0);
	assert_int_equal(put_with_meta(sp, 0, 64 << 10, 1002, 8, TL_SPOOL_PUT_FORCE), 0);
	assert_int_equal(tl_spool_flush(sp, 5 * SEC), 0);
	assert_int_equal(log.n, forced + 3);
	assert_int_equal(log.e[forced].user, 1000);
	assert_int_equal(log.e[forced].status, 0);
	assert_true(log.e[forced].key > 0);
	assert_int_equal(log.e[forced + 1].status, -ENOSPC);
	assert_int_equal(log.e[forced + 2].user, 1002);
	assert_int_equal(log.e[forced + 2].status, 0);
	assert_int_equal(log.e[forced + 2].key, log.e[forced].key + 1);
	tl_spool_stats(sp, &st);
	assert_int_equal(st.dropped_newest, 2);
	assert_int_equal(st.lost, 0);
	assert_true(st.used_bytes > st.high_water_bytes);
	/* The hook saw the stored records only, never a dropped one. */
	assert_false(h->bad);
	for (size_t i = 0, j = 0; i < log.n; i++) {
		if (log.e[i].status != 0)
			continue;
		assert_true(j < h->n);
		assert_int_equal(h->e[j].user, log.e[i].user);
		j++;
		if (i == log.n - 1)
			assert_int_equal(j, h->n);
	}
	tl_spool_close(sp);
	clog_fini(&log);
	free(h);
}

/* ---- kill -9 inside the hook ---- */

/* Child side: the payload and the side data both start with the sequence number. */
struct hcrash {
	int fd_in_hook;   /* one byte when it parks inside the hook */
	unsigned park_at; /* park in this hook call (1-based), 0: never */
	unsigned calls;
	useconds_t dwell; /* sleep in every hook call: kills land inside it */
};

static int
hcrash_txn(void *arg, struct tl_spool_txn *txn, const struct tl_spool_buf *const *bufs, unsigned n)
{
	struct hcrash *hc = arg;
	uint64_t last = 0;

	for (unsigned i = 0; i < n; i++) {
		if (bufs[i]->meta_len != 8 || memcmp(bufs[i]->meta, bufs[i]->data, 8) != 0)
			_exit(6);
		memcpy(&last, bufs[i]->meta, 8);
	}
	if (tl_spool_txn_state_put(txn, "seq", &last, 8) != 0)
		_exit(7);
	if (++hc->calls == hc->park_at) {
		/* State and records are written, not committed: die here. */
		if (write(hc->fd_in_hook, "h", 1) != 1)
			_exit(8);
		for (;;)
			pause();
	}
	if (hc->dwell)
		usleep(hc->dwell);
	return 0;
}

static void
hcrash_child(const struct tl_spool_conf *c, int fd_commit, struct hcrash *hc, uint64_t seed)
{
	struct tl_spool_hooks hk = {.meta_size = 8, .on_txn = hcrash_txn, .arg = hc};
	struct tl_spool *sp = NULL;
	uint64_t s = seed, seq = 0;

	crash_fd = fd_commit;
	alarm(20); /* never outlive the test */
	if (tl_spool_open(c, 1, 0, crash_commit, NULL, &sp) != 0)
		_exit(2);
	if (tl_spool_set_hooks(sp, &hk) != 0)
		_exit(2);
	for (;;) {
		struct tl_spool_buf *b = tl_spool_buf_get(sp, 0);
		uint32_t n;

		if (b == NULL) {
			sched_yield();
			continue;
		}
		n = 8 + (uint32_t)(rng64(&s) % 2000);
		fill(b->data, n, rng64(&s));
		memcpy(b->data, &seq, 8);
		memcpy(b->meta, &seq, 8);
		b->meta_len = 8;
		b->len = n;
		b->user = XXH3_64bits(b->data, n);
		if (tl_spool_buf_put(sp, 0, b) != 0)
			_exit(4);
		seq++;
	}
}

/* After the crash: records are seq 0..S in order and the state says S (or both absent). */
static size_t
hcrash_check(const struct tl_spool_conf *c)
{
	struct tl_spool *sp = open_spool(c, 0, NULL);
	struct tl_spool_stats st;
	struct got g;
	void *v = NULL;
	size_t len = 0, n;
	uint64_t seq;

	tl_spool_stats(sp, &st);
	assert_int_equal(st.quarantined, 0);
	got_init(&g, st.records + 1);
	read_all(sp, 0, &g);
	assert_int_equal(g.n, st.records);
	for (size_t i = 0; i < g.n; i++) {
		assert_true(g.len[i] >= 8);
		memcpy(&seq, g.data[i], 8);
		assert_int_equal(seq, i);
	}
	assert_int_equal(tl_spool_state_get(sp, "seq", &v, &len), 0);
	if (g.n == 0) {
		assert_null(v);
	} else {
		assert_non_null(v);
		assert_int_equal(len, 8);
		memcpy(&seq, v, 8);
		assert_int_equal(seq, g.n - 1);
	}
	free(v);
	n = g.n;
	got_fini(&g);
	tl_spool_close(sp);
	return n;
}

static void
test_spool_crash_in_hook_records_and_state_atomic(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = fx->conf;
	const unsigned delays_ms[] = {0, 9, 31};

	c.nosync = false;
	c.commit_interval_ns = 500000;
	for (unsigned round = 0; round < 3; round++) {
		struct hcrash hc = {.park_at = round == 0 ? 4 : 0, .dwell = 3000};
		int fds[2], hfd[2], status;
		size_t committed = 0, after;
		struct crash_msg m;
		pid_t pid;
		char x;

		assert_int_equal(pipe(fds), 0);
		assert_int_equal(pipe(hfd), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			close(hfd[0]);
			hc.fd_in_hook = hfd[1];
			hcrash_child(&c, fds[1], &hc, 99 + round);
			_exit(5);
		}
		close(fds[1]);
		close(hfd[1]);
		if (round == 0) {
			/* Parked inside the 4th transaction's hook, state already put. */
			assert_int_equal(read(hfd[0], &x, 1), 1);
		} else {
			assert_int_equal(read(fds[0], &m, sizeof(m)), sizeof(m));
			committed++;
			usleep(delays_ms[round] * 1000);
		}
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		while (read(fds[0], &m, sizeof(m)) == (ssize_t)sizeof(m))
			committed++;
		close(fds[0]);
		close(hfd[0]);
		after = hcrash_check(&c);
		/* Every reported commit is there; parked, nothing more is. */
		if (round == 0)
			assert_int_equal(after, committed);
		else
			assert_true(after >= committed);
		rm_spool(fx->dir);
	}
}

/* ---- benchmark ---- */

static void
test_spool_bench_reports_consistent_figures(void **state)
{
	struct fixture *fx = *state;
	struct tl_spool_conf c = fx->conf;
	struct tl_spool_bench_result r;
	const char *secs = getenv("TL_SPOOL_BENCH_S");
	uint64_t dur = secs ? strtoull(secs, NULL, 10) * SEC : 150 * MS;
	size_t loglen, batch = 256 << 10, off = 0;
	char *text = load_log(&loglen);
	uint8_t *payload = malloc(batch);
	uint32_t events = 0;

	assert_non_null(payload);
	/* A batch of 2.4 KB events cut from real log text. */
	while (off + 2400 <= batch) {
		memcpy(payload + off, text + (off % (loglen - 2400)), 2400);
		off += 2400;
		events++;
	}
	/* The profile defaults (synced), with 256 KiB buffers: about what a worker's 1 MiB
	 * batch becomes after gzip. Only the folder is ours. */
	assert_int_equal(tl_opt_defaults(tl_spool_opts, &c), 0);
	snprintf(c.path, sizeof(c.path), "%s", fx->dir);
	c.buffer_size = batch;
	assert_false(c.nosync);
	assert_int_equal(tl_spool_bench(&c, payload, (uint32_t)off, events, dur, &r), 0);
	assert_true(r.records > 0);
	assert_int_equal(r.events, r.records * events);
	assert_int_equal(r.payload_bytes, r.records * off);
	assert_true(r.commits >= 1 && r.commits <= r.records * 2);
	assert_true(r.mb_per_s > 0 && r.events_per_s > r.records_per_s);
	assert_true(r.commit_p99_ns >= r.commit_p50_ns);
	printf("figure spool_events_per_s %.0f events/s\n", r.events_per_s);
	printf("figure spool_mb_per_s %.1f MB/s\n", r.mb_per_s);
	printf("# %u x 2400 B events per %zu B record, %llu records, %llu commits in %.2f s, "
	       "commit p50 <= %.2f ms p99 <= %.2f ms\n",
	        events, off, (unsigned long long)r.records, (unsigned long long)r.commits,
	        (double)r.elapsed_ns / 1e9, r.commit_p50_ns / 1e6, r.commit_p99_ns / 1e6);
	/* Bad arguments; a folder that already holds a spool. */
	assert_int_equal(tl_spool_bench(&c, payload, (uint32_t)batch + 1, 1, dur, &r), -EINVAL);
	assert_int_equal(tl_spool_bench(&c, NULL, 10, 1, dur, &r), -EINVAL);
	assert_int_equal(tl_spool_bench(&c, payload, 10, 0, dur, &r), -EINVAL);
	tl_spool_close(open_spool(&c, 0, NULL));
	assert_int_equal(tl_spool_bench(&c, payload, 10, 1, dur, &r), -EEXIST);
	free(payload);
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_spool_opts_defaults_valid),
	        cmocka_unit_test_setup_teardown(
	                test_spool_check_inconsistent_conf_rejected, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_spool_open_bad_args_einval, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_open_path_under_file_fails, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_open_rdonly_missing_enoent, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_open_second_writer_ebusy_reader_ok, setup, teardown),
	        cmocka_unit_test(test_spool_close_stats_null_safe),
	        cmocka_unit_test_setup_teardown(
	                test_spool_put_commit_read_in_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_read_callback_controls_stop, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_claim_read_back_survives_reopen_deleted_with_record, setup,
	                teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_claim_bad_args_einval_erofs, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_state_scan_prefix_and_delete, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_kick_runs_hook_without_records, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_hook_adds_records_in_same_txn, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_pool_exhausted_null_counted, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_put_foreign_or_bad_buffer_einval, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_many_producers_each_once_in_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_reopen_records_survive_keys_continue, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_crash_kill9_committed_records_intact, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_damaged_records_quarantined_rest_readable, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_quarantine_by_reader_moves_record, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_map_grows_from_small_initial, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_full_backpressure_refuses_counted, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_full_drop_newest_drops_counted, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_full_drop_oldest_evicts_counted, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_reader_in_txn_writer_keeps_committing, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_resize_waits_for_readers_then_completes, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_commit_failure_reported_sticky, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_hook_sees_txn_buffers_with_meta, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_more_run_commits_in_one_txn, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_hook_state_survives_reopen_and_rdonly, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_state_get_bad_args_einval, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_state_old_spool_rdonly_absent_rw_created, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_hook_error_fails_writer_nothing_stored, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_set_hooks_misuse_rejected, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_meta_len_reset_on_get_bounded_by_cap, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_state_put_bad_name_einval, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_hook_state_map_full_grows_and_retries, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_hook_state_never_fits_drop_newest_not_fatal, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_force_put_accepted_while_full_backpressure, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_force_put_drop_newest_stored_not_dropped, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_crash_in_hook_records_and_state_atomic, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_bench_reports_consistent_figures, setup, teardown),
	};

	tl_log_set_level(TL_LOG_ERR);
	/* TL_SPOOL_BENCH_S=<seconds>: run only the benchmark, for that long. */
	if (getenv("TL_SPOOL_BENCH_S") != NULL)
		cmocka_set_test_filter("test_spool_bench_*");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
