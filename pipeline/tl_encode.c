/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Event -> RowBinary encoder and the batch format (tl_batch.h).
 *
 * The encoder writes rows straight into one body buffer sized at create time for
 * batch_bytes plus the largest row the schema's limits allow. Before a row is written
 * its size is bounded from the event's value lengths (one pass over at most 64 columns
 * and 64 unknown fields): if the bound does not fit in what is left, nothing is written.
 * A batch that is not yet full always has room for the largest row, so events from
 * tl_json_extract() never see -ENOBUFS; the bound check is what keeps hand-made or
 * hostile events from writing out of bounds.
 *
 * Why batch_id collisions are negligible: each encoder draws a uniformly random 64-bit
 * base b and numbers its batches b, b+1, ..., b+n-1. Two encoders collide only if their
 * ranges overlap, which for ranges of n1 and n2 batches happens with probability at most
 * (n1 + n2) / 2^64. Over an appliance's whole life with E encoders (restarts x workers x
 * 3 tables) sealing T batches in total, P(any collision) <= E * T / 2^64: with E = 10^5
 * and T = 10^10 (100 batches/s for three years) that is 5e-5, and only batches of the
 * same table whose ids meet matter (an uplink that checks "did batch X land" looks at one
 * table, one appliance and a recent time window, which shrinks T to the batches of that
 * window: below 1e-9). Random per-batch ids would be far worse (T^2 / 2^65 ~ 1), and a
 * persisted counter would need a write per batch outside the spool.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <libdeflate.h>
#include <lz4.h>
#include <xxhash.h>

#include "tl_batch.h"
#include "tl_classify.h"
#include "tl_encode.h"
#include "tl_error.h"
#include "tl_json.h"
#include "tl_rollup.h"
#include "tl_schema_private.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Largest encoding of one profile column besides its value bytes: null flag, LEB128
 * length (5 bytes for a u32) or a fixed-width value, and a datetime's _ns column. */
#define COL_OVERHEAD 16
/* Tapline columns of an event row besides appliance id and extra: DateTime 4, Int64 8,
 * FixedString(16), 2 x UInt64, UInt8, UInt64, and extra's LEB128 length and braces. */
#define EVENT_FIXED (4 + 8 + 16 + 8 + 8 + 1 + 8 + 5 + 2 + CLASS_MAX)
/* matched_patterns and categories: a count and up to TL_CLASSIFY_MAX_MATCHES names each
 * (a length byte and at most TL_CLASSIFY_ID_MAX - 1 bytes), then the severity */
#define CLASS_MAX (2 * (1 + TL_CLASSIFY_MAX_MATCHES * TL_CLASSIFY_ID_MAX) + 1)
/* dead_letter besides appliance id, reason and raw bytes: DateTime, Int64, UInt64 x 2,
 * two LEB128 lengths. */
#define DL_FIXED (4 + 8 + 8 + 8 + 5 + 5)
/* A rollup row without its two keys and appliance id: window_start, window_ns, the
 * correction flag, 5 counters, the histogram, ingestion_time, batch_id, event_id. */
#define RU_FIXED (4 + 8 + 1 + 5 * 8 + TL_ROLLUP_HIST * 8 + 4 + 8 + 16)
#define RU_MAX_ROW (RU_FIXED + 2 * (2 + TL_ROLLUP_KEY_MAX))
/* Longest reason name (they are short snake_case words). */
#define REASON_MAX 64
/* A dead_letter row keeps at least a whole UDP datagram's worth of raw bytes. */
#define DL_RAW_MIN 65535u

struct tl_encoder {
	const struct tl_schema *s;
	struct libdeflate_compressor *gz;
	uint8_t *body;     /* body_cap bytes */
	uint32_t *row_end; /* batch_rows entries */
	uint8_t *scratch;  /* max_row bytes: tl_encode_event_id() */
	uint8_t last_id[16]; /* event_id of the last event row written */
	uint32_t body_cap;
	uint32_t body_len;
	uint32_t rows;
	uint32_t batch_rows;
	uint32_t batch_bytes;
	uint32_t max_row;
	uint32_t raw_max; /* dead_letter: longest raw kept */
	uint32_t n_cols;
	uint32_t max_prefix; /* longest prefix path of an unknown field's parent */
	uint32_t schema_gen;
	uint32_t route;
	uint16_t table;
	uint16_t producer;
	int codec; /* enum tl_batch_codec */
	uint64_t batch_base;
	uint64_t batch_seq;
	int64_t first_ns;
	int64_t min_ns;
	int64_t max_ns;
	uint8_t col_type[TL_SCHEMA_MAX_COLS];
	uint8_t col_null[TL_SCHEMA_MAX_COLS]; /* 1: Nullable(T) */
	uint32_t appl_len;                    /* bytes of appl (RowBinary String) */
	uint8_t appl[5 + TL_ENCODE_APPLIANCE_MAX];
};

/* ---- primitive writers ---- */

static inline uint8_t *
put_u8(uint8_t *p, uint8_t v)
{
	*p = v;
	return p + 1;
}

static inline uint8_t *
put_u32(uint8_t *p, uint32_t v)
{
	tl_batch_put32(p, v);
	return p + 4;
}

static inline uint8_t *
put_u64(uint8_t *p, uint64_t v)
{
	tl_batch_put64(p, v);
	return p + 8;
}

static inline unsigned
leb_len(uint64_t v)
{
	unsigned n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static inline uint8_t *
put_leb(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static inline uint8_t *
put_bytes(uint8_t *p, const void *src, uint32_t len)
{
	p = put_leb(p, len);
	if (len)
		memcpy(p, src, len);
	return p + len;
}

/*
 * A string whose decoded length is only known once it is decoded: decode after room for
 * the longest LEB128 prefix it can need (the escaped length's, since decoding never
 * grows), then close the gap in the rare case the prefix came out shorter.
 */
static uint8_t *
put_unescaped(uint8_t *p, const uint8_t *src, uint32_t len)
{
	unsigned k = leb_len(len), k2;
	size_t n = tl_json_unescape(src, len, p + k);

	k2 = leb_len(n);
	if (unlikely(k2 != k))
		memmove(p + k2, p + k, n);
	put_leb(p, n);
	return p + k2 + n;
}

/* A String written after a reserved prefix: the value already sits at p + k. */
static uint8_t *
close_string(uint8_t *p, unsigned k, size_t n)
{
	unsigned k2 = leb_len(n);

	if (k2 != k)
		memmove(p + k2, p + k, n);
	put_leb(p, n);
	return p + k2 + n;
}

/* DateTime is UInt32 seconds: floor(ns / 1e9) clamped to its range. */
static inline uint32_t
datetime_secs(int64_t ns)
{
	int64_t s = ns / 1000000000;

	if (ns % 1000000000 < 0)
		s--;
	if (s < 0)
		return 0;
	if (s > (int64_t)UINT32_MAX)
		return UINT32_MAX;
	return (uint32_t)s;
}

static inline int
has_text(const struct tl_value *v)
{
	return v->kind > TL_VAL_NULL && (v->ptr != NULL || v->len == 0);
}

/* ---- columns ---- */

static const char *const base_type[TL_COL_TYPE_MAX] = {
        [TL_COL_STRING] = "String",
        [TL_COL_ANY] = "String",
        [TL_COL_INT64] = "Int64",
        [TL_COL_UINT64] = "UInt64",
        [TL_COL_FLOAT64] = "Float64",
        [TL_COL_BOOL] = "UInt8",
        [TL_COL_DATETIME] = "DateTime",
};

static int
add_col(struct tl_encode_col *cols, uint32_t cap, uint32_t *n, const char *name, const char *suffix,
        const char *type, int nullable)
{
	struct tl_encode_col *c;
	int w;

	if (*n >= cap)
		return -ENOSPC;
	c = &cols[*n];
	w = snprintf(c->name, sizeof(c->name), "%s%s", name, suffix);
	if (w < 0 || (size_t)w >= sizeof(c->name))
		return TL_E_SCHEMA;
	if (nullable)
		snprintf(c->type, sizeof(c->type), "Nullable(%s)", type);
	else
		snprintf(c->type, sizeof(c->type), "%s", type);
	(*n)++;
	return 0;
}

int
tl_encode_columns(const struct tl_schema *s, enum tl_batch_table t, struct tl_encode_col *cols,
        uint32_t cap, uint32_t *n)
{
	static const struct {
		const char *name;
		const char *type;
	} event_cols[] =
	        {
	                {"ingestion_time", "DateTime"},
	                {"ingestion_time_ns", "Int64"},
	                {"event_id", "FixedString(16)"},
	                {"producer_id", "UInt64"},
	                {"sequence", "UInt64"},
	                {"late", "UInt8"},
	                {"appliance_id", "String"},
	                {"batch_id", "UInt64"},
	                {"extra", "String"},
	                {"matched_patterns", "Array(String)"},
	                {"categories", "Array(String)"},
	                {"severity", TL_ENCODE_SEVERITY_TYPE},
	        },
	  dl_cols[] = {
	          {"ingestion_time", "DateTime"},
	          {"ingestion_time_ns", "Int64"},
	          {"appliance_id", "String"},
	          {"producer_id", "UInt64"},
	          {"reason", "String"},
	          {"raw", "String"},
	          {"batch_id", "UInt64"},
	  };
	static const char *const ru_head[][2] = {
	        {"window_start", "DateTime"},
	        {"window_ns", "Int64"},
	        {"event_type", "String"},
	        {"database", "String"},
	        {"correction", "UInt8"},
	        {"count", "UInt64"},
	        {"errors", "UInt64"},
	        {"late", "UInt64"},
	        {"with_duration", "UInt64"},
	        {"duration_sum_ms", "UInt64"},
	};
	static const char *const ru_tail[][2] = {
	        {"ingestion_time", "DateTime"},
	        {"appliance_id", "String"},
	        {"batch_id", "UInt64"},
	        {"event_id", "FixedString(16)"},
	};
	uint32_t k = 0;
	int rc;

	*n = 0;
	if ((unsigned)t >= TL_BATCH_TABLE_MAX ||
	        (s == NULL && t != TL_BATCH_DEAD_LETTER && t != TL_BATCH_ROLLUPS))
		return -EINVAL;
	if (t == TL_BATCH_ROLLUPS) {
		char h[8];

		for (size_t i = 0; i < sizeof(ru_head) / sizeof(ru_head[0]); i++)
			if ((rc = add_col(cols, cap, &k, ru_head[i][0], "", ru_head[i][1], 0)))
				return rc;
		/* Durations in ms, log2 buckets: h00 counts 0 ms, hNN [2^(NN-1), 2^NN). */
		for (int i = 0; i < TL_ROLLUP_HIST; i++) {
			snprintf(h, sizeof(h), "h%02d", i);
			if ((rc = add_col(cols, cap, &k, h, "", "UInt64", 0)))
				return rc;
		}
		for (size_t i = 0; i < sizeof(ru_tail) / sizeof(ru_tail[0]); i++)
			if ((rc = add_col(cols, cap, &k, ru_tail[i][0], "", ru_tail[i][1], 0)))
				return rc;
		*n = k;
		return 0;
	}
	if (t == TL_BATCH_DEAD_LETTER) {
		for (size_t i = 0; i < sizeof(dl_cols) / sizeof(dl_cols[0]); i++)
			if ((rc = add_col(cols, cap, &k, dl_cols[i].name, "", dl_cols[i].type, 0)))
				return rc;
		*n = k;
		return 0;
	}
	for (uint32_t i = 0; i < tl_schema_n_cols(s); i++) {
		const struct tl_col_def *d = tl_schema_col(s, i);
		int nul = !d->required;

		if (d->type < 0 || d->type >= TL_COL_TYPE_MAX)
			return TL_E_SCHEMA;
		if ((rc = add_col(cols, cap, &k, d->name, "", base_type[d->type], nul)))
			return rc;
		if (d->type == TL_COL_DATETIME &&
		        (rc = add_col(cols, cap, &k, d->name, "_ns", "Int64", nul)))
			return rc;
	}
	for (size_t i = 0; i < sizeof(event_cols) / sizeof(event_cols[0]); i++)
		if ((rc = add_col(cols, cap, &k, event_cols[i].name, "", event_cols[i].type, 0)))
			return rc;
	/* Names must be unique: a profile column `extra`, or `x_ns` next to datetime `x`. */
	for (uint32_t i = 0; i < k; i++)
		for (uint32_t j = i + 1; j < k; j++)
			if (strcmp(cols[i].name, cols[j].name) == 0)
				return TL_E_SCHEMA;
	*n = k;
	return 0;
}

/* ---- encoder ---- */

int
tl_encoder_create(const struct tl_schema *s, enum tl_batch_table t,
        const struct tl_encode_conf *conf, struct tl_encoder **out)
{
	struct tl_encode_col *cols = NULL;
	struct tl_encoder *e = NULL;
	const struct tl_limits *lim;
	uint64_t max_row, cap;
	uint32_t ncols;
	size_t alen;
	int rc;

	*out = NULL;
	if (s == NULL || conf == NULL || (unsigned)t >= TL_BATCH_TABLE_MAX ||
	        conf->appliance_id == NULL || conf->batch_rows == 0 ||
	        conf->batch_rows > TL_BATCH_MAX_ROWS || conf->batch_bytes == 0 ||
	        conf->codec < TL_BATCH_CODEC_NONE || conf->codec > TL_BATCH_CODEC_LZ4 ||
	        (conf->codec == TL_BATCH_CODEC_GZIP &&
	                (conf->gzip_level < 1 || conf->gzip_level > 12)))
		return -EINVAL;
	alen = strlen(conf->appliance_id);
	if (alen > TL_ENCODE_APPLIANCE_MAX)
		return -EINVAL;
	cols = calloc(TL_ENCODE_MAX_COLS, sizeof(*cols));
	e = calloc(1, sizeof(*e));
	if (cols == NULL || e == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = tl_encode_columns(s, t, cols, TL_ENCODE_MAX_COLS, &ncols);
	if (rc)
		goto fail;

	e->s = s;
	e->table = (uint16_t)t;
	e->producer = conf->producer;
	e->batch_rows = conf->batch_rows;
	e->batch_bytes = conf->batch_bytes;
	e->codec = conf->codec;
	e->schema_gen = conf->schema_gen;
	e->route = conf->route;
	e->n_cols = tl_schema_n_cols(s);
	e->appl_len = (uint32_t)(put_bytes(e->appl, conf->appliance_id, (uint32_t)alen) - e->appl);
	for (uint32_t i = 0; i < e->n_cols; i++) {
		const struct tl_col_def *d = tl_schema_col(s, i);

		e->col_type[i] = (uint8_t)d->type;
		e->col_null[i] = !d->required;
	}
	for (uint32_t i = 0; i < s->trie.n_prefix; i++)
		if (s->trie.prefix[i].len > e->max_prefix)
			e->max_prefix = s->trie.prefix[i].len;

	lim = tl_schema_limits(s);
	if (lim->max_event_size > TL_BATCH_MAX_BODY || lim->max_extra > TL_EVENT_MAX_EXTRA) {
		rc = -EINVAL;
		goto fail;
	}
	e->raw_max = lim->max_event_size > DL_RAW_MIN ? (uint32_t)lim->max_event_size : DL_RAW_MIN;
	if (t == TL_BATCH_DEAD_LETTER)
		max_row = DL_FIXED + e->appl_len + REASON_MAX + e->raw_max;
	else if (t == TL_BATCH_ROLLUPS)
		max_row = RU_MAX_ROW + e->appl_len;
	else
		/* Column values and unknown fields are disjoint spans of the event, so
		 * together they hold at most max_event_size bytes. */
		max_row = EVENT_FIXED + e->appl_len + (uint64_t)e->n_cols * COL_OVERHEAD +
		          lim->max_extra * (5 + (uint64_t)e->max_prefix) + lim->max_event_size;
	cap = (uint64_t)conf->batch_bytes + max_row;
	if (cap > TL_BATCH_MAX_BODY) {
		rc = -EINVAL;
		goto fail;
	}
	e->max_row = (uint32_t)max_row;
	e->body_cap = (uint32_t)cap;
	e->body = malloc(e->body_cap);
	e->row_end = malloc(sizeof(*e->row_end) * e->batch_rows);
	if (e->body == NULL || e->row_end == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if (t != TL_BATCH_DEAD_LETTER && t != TL_BATCH_ROLLUPS &&
	        (e->scratch = malloc(e->max_row)) == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	/* LZ4's block format caps one input at LZ4_MAX_INPUT_SIZE (~2 GB): far above
	 * TL_BATCH_MAX_BODY, so every body this encoder can build compresses in one block. */
	if (e->codec == TL_BATCH_CODEC_GZIP &&
	        (e->gz = libdeflate_alloc_compressor(conf->gzip_level)) == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	/* Blocks only until the kernel's pool is first initialised (early boot). */
	if (getrandom(&e->batch_base, sizeof(e->batch_base), 0) != sizeof(e->batch_base)) {
		rc = errno ? -errno : -EIO;
		goto fail;
	}
	free(cols);
	*out = e;
	return 0;
fail:
	free(cols);
	tl_encoder_free(e);
	return rc;
}

void
tl_encoder_free(struct tl_encoder *enc)
{
	if (enc == NULL)
		return;
	libdeflate_free_compressor(enc->gz);
	free(enc->scratch);
	free(enc->row_end);
	free(enc->body);
	free(enc);
}

/* Upper bound of the bytes of an event row's profile columns. */
static uint64_t
cols_bound(const struct tl_encoder *e, const struct tl_event *ev)
{
	uint64_t b = (uint64_t)e->n_cols * COL_OVERHEAD;

	for (uint32_t i = 0; i < e->n_cols; i++)
		b += ev->col[i].len;
	return b;
}

/* Upper bound of tl_json_format_extra()'s output: braces, and per field a comma,
 * quotes, colon, its parent's path and a dot. */
static uint64_t
extra_bound(const struct tl_encoder *e, const struct tl_event *ev)
{
	uint64_t b = 2;

	for (uint32_t i = 0; i < ev->n_extra; i++)
		b += 5 + (uint64_t)e->max_prefix + ev->extra[i].key_len + ev->extra[i].val_len;
	return b;
}

/* Write the profile columns of @p ev at @p p; return the end. Room was checked. */
static uint8_t *
put_cols(const struct tl_encoder *e, const struct tl_event *ev, uint8_t *p)
{
	for (uint32_t i = 0; i < e->n_cols; i++) {
		const struct tl_value *v = &ev->col[i];
		const int nul = e->col_null[i];
		const uint8_t k = v->kind;

		switch (e->col_type[i]) {
		case TL_COL_STRING:
		case TL_COL_ANY:
			if (!has_text(v)) {
				/* A required column is never absent in an accepted event;
				 * an empty string keeps a hand-made one well-formed. */
				p = nul ? put_u8(p, 1) : put_leb(p, 0);
				break;
			}
			if (nul)
				p = put_u8(p, 0);
			if (k == TL_VAL_STRING && v->escaped && v->len > 0)
				p = put_unescaped(p, v->ptr, v->len);
			else
				p = put_bytes(p, v->ptr, v->len);
			break;
		case TL_COL_INT64:
		case TL_COL_UINT64:
			if (k != TL_VAL_INT && k != TL_VAL_UINT) {
				p = nul ? put_u8(p, 1) : put_u64(p, 0);
				break;
			}
			if (nul)
				p = put_u8(p, 0);
			p = put_u64(p, k == TL_VAL_INT ? (uint64_t)v->i : v->u);
			break;
		case TL_COL_FLOAT64:
			if (k != TL_VAL_FLOAT) {
				p = nul ? put_u8(p, 1) : put_u64(p, 0);
				break;
			}
			if (nul)
				p = put_u8(p, 0);
			{
				uint64_t bits;

				memcpy(&bits, &v->f, sizeof(bits));
				p = put_u64(p, bits);
			}
			break;
		case TL_COL_BOOL:
			if (k != TL_VAL_BOOL) {
				p = put_u8(p, nul ? 1 : 0);
				break;
			}
			if (nul)
				p = put_u8(p, 0);
			p = put_u8(p, v->b ? 1 : 0);
			break;
		case TL_COL_DATETIME:
			if (k != TL_VAL_TIME) {
				if (nul) {
					p = put_u8(p, 1);
					p = put_u8(p, 1);
				} else {
					p = put_u32(p, 0);
					p = put_u64(p, 0);
				}
				break;
			}
			if (nul)
				p = put_u8(p, 0);
			p = put_u32(p, datetime_secs(v->ns));
			if (nul)
				p = put_u8(p, 0);
			p = put_u64(p, (uint64_t)v->ns);
			break;
		default:
			/* tl_encode_columns() rejected such schemas at create time. */
			break;
		}
	}
	return p;
}

static void
event_id(const uint8_t *start, const uint8_t *end, uint8_t id[16])
{
	XXH128_hash_t h = XXH3_128bits(start, (size_t)(end - start));
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, h);
	memcpy(id, c.digest, 16);
}

/* Book a written row; return 1 if the batch is now full. */
static int
commit_row(struct tl_encoder *e, uint8_t *end, int64_t now_ns, int64_t ev_ns)
{
	if (e->rows == 0) {
		e->first_ns = now_ns;
		e->min_ns = ev_ns;
		e->max_ns = ev_ns;
	} else {
		if (ev_ns < e->min_ns)
			e->min_ns = ev_ns;
		if (ev_ns > e->max_ns)
			e->max_ns = ev_ns;
	}
	e->body_len = (uint32_t)(end - e->body);
	e->row_end[e->rows++] = e->body_len;
	return e->rows >= e->batch_rows || e->body_len >= e->batch_bytes;
}

/* -ENOBUFS / -E2BIG if a row of at most @p bound bytes does not fit. */
static inline int
check_room(const struct tl_encoder *e, uint64_t bound)
{
	if (likely(bound <= e->body_cap - e->body_len))
		return 0;
	return bound > e->body_cap || e->rows == 0 ? -E2BIG : -ENOBUFS;
}

static uint8_t *
put_name(uint8_t *p, const char *s)
{
	size_t n = strnlen(s, TL_CLASSIFY_ID_MAX - 1);

	p = put_leb(p, n);
	memcpy(p, s, n);
	return p + n;
}

/*
 * matched_patterns Array(String), categories Array(String) (each category once, in the
 * order of the first pattern that has it), severity Enum8. At most CLASS_MAX bytes.
 */
static uint8_t *
put_class(uint8_t *p, const struct tl_event *ev)
{
	const struct tl_classify_pattern *pat[TL_CLASSIFY_MAX_MATCHES];
	const char *cat[TL_CLASSIFY_MAX_MATCHES];
	unsigned n = 0, nc = 0;

	if (ev->cls_db != NULL)
		for (unsigned i = 0; i < ev->cls.n && i < TL_CLASSIFY_MAX_MATCHES; i++)
			if ((pat[n] = tl_classify_db_pattern(ev->cls_db, ev->cls.ids[i])) != NULL)
				n++;
	p = put_leb(p, n);
	for (unsigned i = 0; i < n; i++) {
		unsigned j = 0;

		p = put_name(p, pat[i]->id);
		while (j < nc && strcmp(cat[j], pat[i]->category) != 0)
			j++;
		if (j == nc)
			cat[nc++] = pat[i]->category;
	}
	p = put_leb(p, nc);
	for (unsigned i = 0; i < nc; i++)
		p = put_name(p, cat[i]);
	return put_u8(p, ev->cls_db != NULL && ev->cls.severity < TL_CLASSIFY_SEV_MAX
	                         ? ev->cls.severity
	                         : 0);
}

int
tl_encode_event_meta(struct tl_encoder *enc, const struct tl_event *ev,
        const struct tl_encode_meta *meta, int64_t now_ns)
{
	uint8_t *p, *start;
	uint64_t xb, bound;
	unsigned k;
	size_t n;
	int rc;

	if (unlikely(enc->table >= TL_BATCH_DEAD_LETTER || ev->n_extra > TL_EVENT_MAX_EXTRA))
		return -EINVAL;
	if (unlikely(enc->rows >= enc->batch_rows))
		return -ENOBUFS;
	xb = extra_bound(enc, ev);
	bound = cols_bound(enc, ev) + EVENT_FIXED + enc->appl_len + xb;
	if (unlikely((rc = check_room(enc, bound)) != 0))
		return rc;

	start = enc->body + enc->body_len;
	p = put_cols(enc, ev, start);
	{
		uint8_t id[16];

		event_id(start, p, id);
		p = put_u32(p, datetime_secs(now_ns));
		p = put_u64(p, (uint64_t)now_ns);
		memcpy(p, id, 16);
		memcpy(enc->last_id, id, 16);
		p += 16;
	}
	p = put_u64(p, meta ? meta->producer_id : 0);
	p = put_u64(p, meta ? meta->sequence : 0);
	p = put_u8(p, meta && meta->late ? 1 : 0);
	memcpy(p, enc->appl, enc->appl_len);
	p += enc->appl_len;
	p = put_u64(p, enc->batch_base + enc->batch_seq);
	k = leb_len(xb);
	n = tl_json_format_extra(enc->s, ev, p + k, (size_t)xb);
	if (unlikely(n > xb))
		n = (size_t)xb; /* cannot happen: xb bounds it; never write past it */
	p = close_string(p, k, n);
	p = put_class(p, ev);
	return commit_row(enc, p, now_ns, ev->time_ns);
}

void
tl_encode_last_id(const struct tl_encoder *enc, uint8_t id[16])
{
	memcpy(id, enc->last_id, 16);
}

int
tl_encode_drop_last(struct tl_encoder *enc)
{
	if (enc == NULL || enc->rows == 0)
		return -EINVAL;
	enc->rows--;
	enc->body_len = enc->rows ? enc->row_end[enc->rows - 1] : 0;
	return 0;
}

int
tl_encode_rollup(struct tl_encoder *enc, const struct tl_rollup_row *r, int64_t now_ns)
{
	uint8_t *p, *start, id[16];
	uint64_t batch_id;
	uint32_t tl, dl;
	int rc;

	if (enc == NULL || r == NULL || enc->table != TL_BATCH_ROLLUPS)
		return -EINVAL;
	if (unlikely(enc->rows >= enc->batch_rows))
		return -ENOBUFS;
	if ((rc = check_room(enc, RU_MAX_ROW + enc->appl_len)))
		return rc;
	tl = (uint32_t)strnlen(r->event_type, TL_ROLLUP_KEY_MAX);
	dl = (uint32_t)strnlen(r->database, TL_ROLLUP_KEY_MAX);
	batch_id = enc->batch_base + enc->batch_seq;
	start = p = enc->body + enc->body_len;
	p = put_u32(p, datetime_secs(r->window_ns));
	p = put_u64(p, (uint64_t)r->window_ns);
	p = put_bytes(p, r->event_type, tl);
	p = put_bytes(p, r->database, dl);
	p = put_u8(p, r->correction ? 1 : 0);
	p = put_u64(p, r->count);
	p = put_u64(p, r->errors);
	p = put_u64(p, r->late);
	p = put_u64(p, r->dur_count);
	p = put_u64(p, r->duration_sum_ms);
	for (int i = 0; i < TL_ROLLUP_HIST; i++)
		p = put_u64(p, r->hist[i]);
	/* The row's identity: its content, its batch and its place there (two equal rows
	 * of one batch are two rows). */
	{
		uint8_t *q = p;

		q = put_u64(q, batch_id);
		q = put_u32(q, enc->rows);
		event_id(start, q, id);
	}
	p = put_u32(p, datetime_secs(now_ns));
	memcpy(p, enc->appl, enc->appl_len);
	p += enc->appl_len;
	p = put_u64(p, batch_id);
	memcpy(p, id, 16);
	p += 16;
	return commit_row(enc, p, now_ns, r->window_ns);
}

int
tl_encode_event(struct tl_encoder *enc, const struct tl_event *ev, int64_t now_ns)
{
	return tl_encode_event_meta(enc, ev, NULL, now_ns);
}

int
tl_encode_event_id(struct tl_encoder *enc, const struct tl_event *ev, uint8_t id[16])
{
	uint8_t *end;

	if (enc->table >= TL_BATCH_DEAD_LETTER)
		return -EINVAL;
	if (cols_bound(enc, ev) > enc->max_row)
		return -E2BIG;
	end = put_cols(enc, ev, enc->scratch);
	event_id(enc->scratch, end, id);
	return 0;
}

int
tl_encode_reject(
        struct tl_encoder *enc, const struct tl_event *ev, enum tl_reason verdict, int64_t now_ns)
{
	const char *why;
	uint32_t raw_len;
	uint8_t *p;
	size_t wl;
	int rc;

	if (enc->table != TL_BATCH_DEAD_LETTER || verdict == TL_REASON_OK ||
	        (unsigned)verdict >= TL_REASON_MAX)
		return -EINVAL;
	if (unlikely(enc->rows >= enc->batch_rows))
		return -ENOBUFS;
	why = tl_reason_name(verdict);
	wl = strnlen(why, REASON_MAX);
	raw_len = ev->raw == NULL ? 0 : ev->raw_len < enc->raw_max ? ev->raw_len : enc->raw_max;
	if ((rc = check_room(enc, DL_FIXED + enc->appl_len + REASON_MAX + (uint64_t)raw_len)))
		return rc;

	p = enc->body + enc->body_len;
	p = put_u32(p, datetime_secs(now_ns));
	p = put_u64(p, (uint64_t)now_ns);
	memcpy(p, enc->appl, enc->appl_len);
	p += enc->appl_len;
	p = put_u64(p, 0); /* producer_id: raw mode */
	p = put_bytes(p, why, (uint32_t)wl);
	p = put_bytes(p, ev->raw, raw_len);
	p = put_u64(p, enc->batch_base + enc->batch_seq);
	return commit_row(enc, p, now_ns, now_ns);
}

uint32_t
tl_encode_pending(const struct tl_encoder *enc)
{
	return enc->rows;
}

int64_t
tl_encode_first_ns(const struct tl_encoder *enc)
{
	return enc->first_ns;
}

uint64_t
tl_encode_batch_id(const struct tl_encoder *enc)
{
	return enc->batch_base + enc->batch_seq;
}

uint32_t
tl_encode_raw_max(const struct tl_encoder *enc)
{
	return enc->raw_max;
}

static size_t
body_bound(const struct tl_encoder *e, size_t len)
{
	switch (e->codec) {
	case TL_BATCH_CODEC_GZIP:
		return libdeflate_gzip_compress_bound(e->gz, len);
	case TL_BATCH_CODEC_LZ4:
		return (size_t)LZ4_compressBound((int)len);
	default:
		return len;
	}
}

size_t
tl_encode_seal_max(const struct tl_encoder *enc)
{
	return TL_BATCH_HDR_LEN + 4 * (size_t)enc->batch_rows + body_bound(enc, enc->body_cap);
}

int
tl_encode_seal(struct tl_encoder *enc, void *out, size_t cap, size_t *len)
{
	uint8_t *o = out;
	struct tl_batch_hdr h;
	size_t head, n;

	*len = 0;
	if (enc->rows == 0)
		return -ENODATA;
	head = TL_BATCH_HDR_LEN + 4 * (size_t)enc->rows;
	if (cap < head)
		return -ENOSPC;
	if (enc->codec == TL_BATCH_CODEC_GZIP) {
		n = libdeflate_gzip_compress(
		        enc->gz, enc->body, enc->body_len, o + head, cap - head);
		if (n == 0)
			return -ENOSPC;
	} else if (enc->codec == TL_BATCH_CODEC_LZ4) {
		/* The default (fast) mode: ~5x the speed of gzip level 1 on these rows for a
		 * somewhat larger body; the spool's fsync bandwidth is far from the limit. */
		int z = LZ4_compress_default((const char *)enc->body, (char *)o + head,
		        (int)enc->body_len, (int)(cap - head > INT_MAX ? INT_MAX : cap - head));

		if (z <= 0)
			return -ENOSPC;
		n = (size_t)z;
	} else {
		n = enc->body_len;
		if (cap - head < n)
			return -ENOSPC;
		memcpy(o + head, enc->body, n);
	}
	for (uint32_t i = 0; i < enc->rows; i++)
		tl_batch_put32(o + TL_BATCH_HDR_LEN + 4 * (size_t)i, enc->row_end[i]);
	h = (struct tl_batch_hdr){
	        .magic = TL_BATCH_MAGIC,
	        .version = TL_BATCH_VERSION,
	        .flags = enc->codec == TL_BATCH_CODEC_GZIP  ? TL_BATCH_F_GZIP
	                 : enc->codec == TL_BATCH_CODEC_LZ4 ? TL_BATCH_F_LZ4
	                                                    : 0,
	        .table = enc->table,
	        .producer = enc->producer,
	        .rows = enc->rows,
	        .body_len = (uint32_t)n,
	        .offsets_len = 4 * enc->rows,
	        .batch_id = enc->batch_base + enc->batch_seq,
	        .created_ns = (uint64_t)enc->first_ns,
	        .min_event_ns = enc->min_ns,
	        .max_event_ns = enc->max_ns,
	        .schema_gen = enc->schema_gen,
	        .route = enc->route,
	};
	tl_batch_hdr_write(&h, o);
	*len = head + n;
	enc->rows = 0;
	enc->body_len = 0;
	enc->batch_seq++;
	return 0;
}

/* ---- batch format ---- */

int
tl_batch_parse(const void *buf, size_t len, struct tl_batch_view *view)
{
	const uint8_t *b = buf;
	struct tl_batch_hdr h;
	const uint8_t *ends;
	uint32_t prev = 0;

	if (buf == NULL || len < TL_BATCH_HDR_LEN)
		return -EBADMSG;
	tl_batch_hdr_read(b, &h);
	if (h.magic != TL_BATCH_MAGIC)
		return -EBADMSG;
	if (h.version != TL_BATCH_VERSION || (h.flags & ~TL_BATCH_F_KNOWN) != 0)
		return -EPROTONOSUPPORT;
	if (h.table >= TL_BATCH_TABLE_MAX || h.rows == 0 || h.rows > TL_BATCH_MAX_ROWS ||
	        h.min_event_ns > h.max_event_ns)
		return -EBADMSG;
	/* 64-bit sums: no field can wrap them. */
	if ((uint64_t)h.offsets_len != 4 * (uint64_t)h.rows ||
	        (uint64_t)TL_BATCH_HDR_LEN + h.offsets_len + h.body_len != (uint64_t)len)
		return -EBADMSG;
	ends = b + TL_BATCH_HDR_LEN;
	for (uint32_t i = 0; i < h.rows; i++) {
		uint32_t e = tl_batch_le32(ends + 4 * (size_t)i);

		if (e <= prev)
			return -EBADMSG;
		prev = e;
	}
	if (prev > TL_BATCH_MAX_BODY)
		return -EBADMSG;
	if ((h.flags & TL_BATCH_F_COMPRESSED) == TL_BATCH_F_COMPRESSED)
		return -EBADMSG;
	if (!(h.flags & TL_BATCH_F_COMPRESSED) && prev != h.body_len)
		return -EBADMSG;
	view->hdr = h;
	view->row_end = ends;
	view->body = ends + h.offsets_len;
	view->raw_len = prev;
	return 0;
}

int
tl_batch_inflate_with(struct libdeflate_decompressor *gz, const struct tl_batch_view *v,
        uint8_t *out, size_t cap, const uint8_t **body)
{
	struct libdeflate_decompressor *d = gz;
	enum libdeflate_result r;
	size_t in_used = 0, got = 0;

	if (!(v->hdr.flags & TL_BATCH_F_COMPRESSED)) {
		*body = v->body;
		return 0;
	}
	if (out == NULL || cap < v->raw_len)
		return -ENOSPC;
	if (v->hdr.flags & TL_BATCH_F_LZ4) {
		/* The safe decoder never reads or writes outside the given spans, whatever the
		 * block says; anything but exactly raw_len bytes is a corrupt record. */
		int z = LZ4_decompress_safe(
		        (const char *)v->body, (char *)out, (int)v->hdr.body_len, (int)v->raw_len);

		if (z < 0 || (uint32_t)z != v->raw_len)
			return -EBADMSG;
		*body = out;
		return 0;
	}
	if (d == NULL && (d = libdeflate_alloc_decompressor()) == NULL)
		return -ENOMEM;
	r = libdeflate_gzip_decompress_ex(
	        d, v->body, v->hdr.body_len, out, v->raw_len, &in_used, &got);
	if (d != gz)
		libdeflate_free_decompressor(d);
	/* One member that fills exactly raw_len bytes and uses the whole body. */
	if (r != LIBDEFLATE_SUCCESS || got != v->raw_len || in_used != v->hdr.body_len)
		return -EBADMSG;
	*body = out;
	return 0;
}

int
tl_batch_inflate(const struct tl_batch_view *v, uint8_t *out, size_t cap, const uint8_t **body)
{
	return tl_batch_inflate_with(NULL, v, out, cap, body);
}
