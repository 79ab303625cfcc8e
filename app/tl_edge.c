/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tl_edge.h"
#include "tl_encode.h"
#include "tl_error.h"
#include "tl_log.h"
#include "tl_time.h"

#define STATE_NAME "rollup"
#define EMIT_ROWS 256             /* rows taken from the rollup per call */
#define TICK_MIN_NS 100000000ull  /* the ticker's period: a quarter window, */
#define TICK_MAX_NS 2000000000ull /* ... within these bounds */
#define FINISH_POLL_NS 1000000ull
#define ROLLUP_PRODUCER 0 /* the spool producer index its records carry */

struct tl_edge {
	struct tl_rollup_conf conf;
	struct tl_spool *spool;
	const struct tl_side *side;
	pthread_mutex_t lock; /* the rollup: the writer's hook, stats, seeding */
	struct tl_rollup *r;
	struct tl_encoder *enc;
	uint8_t *sealed;
	size_t sealed_cap;
	uint8_t *undo; /* the state before this transaction's first hook run */
	size_t undo_len, undo_cap;
	uint8_t *image;
	size_t image_cap;
	struct tl_rollup_row rows[EMIT_ROWS];
	_Atomic bool finishing; /* emit every open window in the next transaction */
	_Atomic bool finished;
	uint64_t batches; /* rollups batches stored */
	pthread_t ticker;
	bool ticking;
	pthread_mutex_t tick_mu;
	pthread_cond_t tick_cv;
	bool stop;
};

static int
grow(uint8_t **buf, size_t *cap, size_t need)
{
	uint8_t *b;

	if (need <= *cap)
		return 0;
	b = realloc(*buf, need * 2);
	if (b == NULL)
		return -ENOMEM;
	*buf = b;
	*cap = need * 2;
	return 0;
}

/* Seal the rollups batch being built and store it in @p txn. */
static int
store_batch(struct tl_edge *e, struct tl_spool_txn *txn)
{
	size_t len;
	int rc;

	if (tl_encode_pending(e->enc) == 0)
		return 0;
	rc = tl_encode_seal(e->enc, e->sealed, e->sealed_cap, &len);
	if (rc < 0)
		return rc;
	rc = tl_spool_txn_put_record(txn, ROLLUP_PRODUCER, e->sealed, (uint32_t)len, NULL);
	if (rc == 0)
		e->batches++;
	return rc;
}

/* Encode rows[0, n) into rollups batches, storing each one that fills in @p txn. */
static int
encode_rows(struct tl_edge *e, struct tl_spool_txn *txn, unsigned n, int64_t wall)
{
	int rc;

	for (unsigned i = 0; i < n; i++) {
		rc = tl_encode_rollup(e->enc, &e->rows[i], wall);
		if (rc == -ENOBUFS) {
			if ((rc = store_batch(e, txn)) < 0)
				return rc;
			rc = tl_encode_rollup(e->enc, &e->rows[i], wall);
		}
		if (rc < 0)
			return rc;
		if (rc == 1 && (rc = store_batch(e, txn)) < 0)
			return rc;
	}
	return 0;
}

/* Rows of the windows the watermark passed (all, when finishing) into rollups batches. */
static int
emit(struct tl_edge *e, struct tl_spool_txn *txn, uint64_t now, bool all, bool *any)
{
	int64_t wall = tl_wall_ns();
	unsigned n;
	int rc;

	while ((n = all ? tl_rollup_emit_all(e->r, e->rows, EMIT_ROWS)
	                : tl_rollup_emit(e->r, now, e->rows, EMIT_ROWS)) > 0) {
		*any = true;
		if ((rc = encode_rows(e, txn, n, wall)) < 0)
			return rc;
	}
	return store_batch(e, txn);
}

/*
 * The writer's share of a transaction: merge the deltas of the batches it stores, emit
 * what is due into the same transaction, store the state there. A retried transaction
 * (map full) starts again from the state before the first try.
 */
static int
on_txn(void *arg, struct tl_spool_txn *txn, const struct tl_spool_buf *const *bufs, unsigned n)
{
	struct tl_edge *e = arg;
	bool finishing = atomic_load(&e->finishing), any = false;
	uint64_t now = tl_mono_ns();
	size_t need;
	long len;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	if (tl_spool_txn_attempt(txn) > 0) {
		rc = tl_rollup_load(e->r, e->undo, e->undo_len);
		if (rc < 0)
			goto out;
	} else {
		need = tl_rollup_save_size(e->r);
		if ((rc = grow(&e->undo, &e->undo_cap, need)) < 0)
			goto out;
		len = tl_rollup_save(e->r, e->undo, e->undo_cap);
		if (len < 0) {
			rc = (int)len;
			goto out;
		}
		e->undo_len = (size_t)len;
	}
	/* A batch the encoder had begun belongs to a transaction that was not stored. */
	if (tl_encode_pending(e->enc) > 0) {
		size_t dummy;

		tl_encode_seal(e->enc, e->sealed, e->sealed_cap, &dummy);
	}
	for (unsigned i = 0; i < n; i++) {
		uint32_t dl;
		const uint8_t *d = tl_side_get(e->side, bufs[i], TL_SIDE_ROLLUP, &dl);

		if (d == NULL)
			continue;
		any = true;
		/* Full of rows waiting to go out: emit, then merge (each emit frees one). */
		while ((rc = tl_rollup_merge(e->r, d, dl, now)) == -ENOSPC) {
			unsigned k = tl_rollup_emit(e->r, now, e->rows, EMIT_ROWS);

			if ((rc = encode_rows(e, txn, k, tl_wall_ns())) < 0)
				goto out;
			if (k == 0) {
				rc = -ENOSPC;
				break;
			}
		}
		if (rc == -EBADMSG) {
			/* Written by this appliance's own sink: a bug, not an input. Skipped,
			 * so one bad delta cannot stop the spool. */
			TL_LOG_RATELIMITED(TL_LOG_ERR, 10, "rollup: a batch's delta is malformed");
			rc = 0;
		}
		if (rc < 0)
			goto out;
	}
	rc = emit(e, txn, now, finishing, &any);
	if (rc < 0 || !any)
		goto out;
	need = tl_rollup_save_size(e->r);
	if ((rc = grow(&e->image, &e->image_cap, need)) < 0)
		goto out;
	len = tl_rollup_save(e->r, e->image, e->image_cap);
	if (len < 0) {
		rc = (int)len;
		goto out;
	}
	rc = tl_spool_txn_state_put(txn, STATE_NAME, e->image, (size_t)len);
out:
	if (rc == 0 && finishing)
		atomic_store(&e->finished, true);
	pthread_mutex_unlock(&e->lock);
	return rc;
}

static void *
ticker_main(void *arg)
{
	struct tl_edge *e = arg;
	uint64_t period = e->conf.window_ns / 4;

	if (period < TICK_MIN_NS)
		period = TICK_MIN_NS;
	if (period > TICK_MAX_NS)
		period = TICK_MAX_NS;
	pthread_mutex_lock(&e->tick_mu);
	while (!e->stop) {
		struct timespec ts;
		uint64_t until;

		clock_gettime(CLOCK_REALTIME, &ts);
		until = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + period;
		ts.tv_sec = (time_t)(until / 1000000000ull);
		ts.tv_nsec = (long)(until % 1000000000ull);
		pthread_cond_timedwait(&e->tick_cv, &e->tick_mu, &ts);
		if (!e->stop)
			tl_spool_kick(e->spool);
	}
	pthread_mutex_unlock(&e->tick_mu);
	return NULL;
}

/* The column named @p name in @p s, or -1 (name "" is -1 too). */
static int
column(const struct tl_schema *s, const char *name)
{
	if (name[0] == '\0')
		return -1;
	for (uint32_t i = 0; i < tl_schema_n_cols(s); i++)
		if (strcmp(tl_schema_col(s, i)->name, name) == 0)
			return (int)i;
	return -1;
}

int
tl_edge_columns(const struct tl_rollup_conf *conf, const struct tl_schema *schema, int *type,
        int *db, int *dur, char *err, size_t errlen)
{
	*type = column(schema, conf->type_column);
	*db = column(schema, conf->database_column);
	*dur = column(schema, conf->duration_column);
	if (*type < 0 || *db < 0 || (conf->duration_column[0] && *dur < 0)) {
		snprintf(err, errlen,
		        "rollup: the schema has no column '%s' (rollup.%s_column); set it, or "
		        "rollup.enabled: false",
		        *type < 0 ? conf->type_column
		        : *db < 0 ? conf->database_column
		                  : conf->duration_column,
		        *type < 0 ? "type"
		        : *db < 0 ? "database"
		                  : "duration");
		return TL_E_SCHEMA;
	}
	return 0;
}

int
tl_edge_create(const struct tl_rollup_conf *conf, const struct tl_schema *schema,
        const char *appliance, struct tl_spool *spool, struct tl_side *side, struct tl_edge **out,
        char *err, size_t errlen)
{
	struct tl_encode_conf ec = {
	        .appliance_id = appliance,
	        .producer = ROLLUP_PRODUCER,
	        .batch_rows = 4096,
	        .batch_bytes = 1u << 20,
	        .codec = TL_BATCH_CODEC_LZ4,
	};
	struct tl_edge *e;
	void *img = NULL;
	size_t img_len = 0;
	int t, d, u, rc;

	*out = NULL;
	if (conf == NULL || schema == NULL || spool == NULL || side == NULL)
		return -EINVAL;
	rc = tl_edge_columns(conf, schema, &t, &d, &u, err, errlen);
	if (rc < 0)
		return rc;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	e->conf = *conf;
	e->spool = spool;
	e->side = side;
	pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_init(&e->tick_mu, NULL);
	pthread_cond_init(&e->tick_cv, NULL);
	rc = tl_rollup_create(conf, &e->r);
	if (rc == 0)
		rc = tl_encoder_create(schema, TL_BATCH_ROLLUPS, &ec, &e->enc);
	if (rc < 0) {
		snprintf(err, errlen, "rollup: %s", tl_strerror(rc));
		goto fail;
	}
	e->sealed_cap = tl_encode_seal_max(e->enc);
	e->sealed = malloc(e->sealed_cap);
	if (e->sealed == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = tl_spool_state_get(spool, STATE_NAME, &img, &img_len);
	if (rc < 0) {
		snprintf(err, errlen, "rollup: reading the stored state: %s", tl_strerror(rc));
		goto fail;
	}
	if (img != NULL) {
		struct tl_rollup_stats st;

		rc = tl_rollup_load(e->r, img, img_len);
		free(img);
		if (rc < 0) {
			/* Starting empty would lose the open windows' counts: refuse. */
			snprintf(err, errlen,
			        "rollup: the stored state does not load (%s): a changed window or "
			        "a "
			        "smaller max_cells/max_streams? Restore them, or move the spool "
			        "aside",
			        tl_strerror(rc));
			goto fail;
		}
		tl_rollup_stats(e->r, &st);
		TL_INFO("rollup: %llu cells of %llu streams restored from the spool",
		        (unsigned long long)st.cells, (unsigned long long)st.streams);
	}
	rc = tl_side_add(side, TL_SIDE_ROLLUP, (uint32_t)tl_rollup_delta_max_size(conf), on_txn, e);
	if (rc < 0) {
		snprintf(err, errlen, "rollup: spool side data: %s", tl_strerror(rc));
		goto fail;
	}
	rc = pthread_create(&e->ticker, NULL, ticker_main, e);
	if (rc != 0) {
		rc = -rc;
		snprintf(err, errlen, "rollup: ticker: %s", tl_strerror(rc));
		goto fail;
	}
	e->ticking = true;
	*out = e;
	return 0;
fail:
	tl_edge_free(e);
	return rc;
}

static void
seed_one(void *arg, uint64_t stream, int64_t max_ns)
{
	void **a = arg;

	tl_watermark_seed(a[0], stream, max_ns, *(uint64_t *)a[1]);
}

void
tl_edge_seed(struct tl_edge *e, struct tl_watermark *wm, uint64_t now_ns)
{
	void *a[2] = {wm, &now_ns};

	if (e == NULL || wm == NULL)
		return;
	pthread_mutex_lock(&e->lock);
	tl_rollup_streams(e->r, seed_one, a);
	pthread_mutex_unlock(&e->lock);
}

int
tl_edge_finish(struct tl_edge *e, uint64_t timeout_ns)
{
	uint64_t kick, deadline = tl_mono_ns() + timeout_ns;
	int rc;

	if (e == NULL)
		return 0;
	atomic_store(&e->finishing, true);
	kick = tl_spool_kick(e->spool);
	rc = tl_spool_kick_wait(e->spool, kick, timeout_ns);
	/* A kick answered by a transaction that began before the flag was seen: again. */
	while (rc == 0 && !atomic_load(&e->finished)) {
		if (tl_mono_ns() >= deadline)
			return -ETIMEDOUT;
		kick = tl_spool_kick(e->spool);
		rc = tl_spool_kick_wait(e->spool, kick, deadline - tl_mono_ns());
	}
	return rc;
}

void
tl_edge_stats(struct tl_edge *e, struct tl_rollup_stats *st, uint64_t *batches)
{
	memset(st, 0, sizeof(*st));
	*batches = 0;
	if (e == NULL)
		return;
	pthread_mutex_lock(&e->lock);
	tl_rollup_stats(e->r, st);
	*batches = e->batches;
	pthread_mutex_unlock(&e->lock);
}

void
tl_edge_stop(struct tl_edge *e)
{
	if (e == NULL || !e->ticking)
		return;
	pthread_mutex_lock(&e->tick_mu);
	e->stop = true;
	pthread_cond_signal(&e->tick_cv);
	pthread_mutex_unlock(&e->tick_mu);
	pthread_join(e->ticker, NULL);
	e->ticking = false;
}

void
tl_edge_free(struct tl_edge *e)
{
	if (e == NULL)
		return;
	tl_edge_stop(e);
	tl_rollup_free(e->r);
	tl_encoder_free(e->enc);
	free(e->sealed);
	free(e->undo);
	free(e->image);
	pthread_mutex_destroy(&e->lock);
	pthread_mutex_destroy(&e->tick_mu);
	pthread_cond_destroy(&e->tick_cv);
	free(e);
}
