/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Realistic telemetry synthesis for `tapline gen` and `tapline bench`.
 *
 * Events follow SPEC section 1: about five events per query id (queued, planning,
 * running, zero to two more running progress events, then finished, failed or
 * cancelled), query_text a TPC-H query, metadata.error a real error line from loghub or
 * the Spark event log on failed events, payload real log lines (a string) or Spark
 * event-log content (a JSON object or array), 1-5 KB per event, timestamps with
 * milliseconds and varied zones, some non-ASCII user ids and database names, some
 * unknown fields (`engine_version`, `metadata.cluster`, `trace`) for the `extra` column.
 * Several queries are in flight at once, so events of different queries interleave and
 * event time is not monotonic across queries (it is within a query).
 *
 * A configurable share of events is malformed, each with exactly one fault whose reason
 * is the one the pipeline reports ("first problem in document order wins; missing_field
 * only if nothing else is wrong"; event_too_large before any parsing).
 *
 * Everything is a pure function of the seed: same data + same conf = same bytes. The
 * PRNG is xoshiro256** seeded through splitmix64 (no rand()).
 *
 * Truth format (one line per event, in generation order; written when conf.truth is set):
 *
 *   valid:   {"seq":N,"valid":true,"reason":"ok","is_error":B,"cols":{...},"extra":{...}}
 *   invalid: {"seq":N,"valid":false,"reason":"<tl_reason name>"}
 *
 * `cols` has one key per e6data column present in the event: query_id (path query_id),
 * event_type (event_type), event_time (timestamp), query_text (query_text), user_id
 * (metadata.user_id), database_name (metadata.database), duration_ms
 * (metadata.duration_ms), rows_affected (metadata.rows_affected), error (metadata.error),
 * payload (payload). Strings hold their decoded value; event_time is an integer, ns since
 * the epoch (UTC); integers are integers; JSON null is null; error and payload (type
 * "any") hold a string's decoded contents, or for any other JSON value its exact text as
 * written in the event, as a string. `extra` maps the dotted path of each unknown field
 * ("engine_version", "metadata.cluster") to its JSON value. is_error is true when error
 * is present, not null and not "". A column absent from the event is absent from cols.
 * For events lost with their datagram (packet-level faults, see tl_pcapw.h) the writer
 * replaces the line with the invalid form carrying the datagram's reason.
 *
 * Thread-safety: a struct tl_corpus is immutable after load and may be shared; a
 * struct tl_corpus_gen belongs to one thread.
 */
#ifndef TL_CORPUS_H
#define TL_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_reason.h"

/* ---- PRNG (shared with tl_pcapw) ---- */

/** xoshiro256** state. */
struct tl_corpus_rng {
	uint64_t s[4];
};

/** Seed @p r from @p seed through splitmix64 (any seed, including 0, is fine). */
static inline void
tl_corpus_rng_seed(struct tl_corpus_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++) {
		uint64_t z = (seed += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		r->s[i] = z ^ (z >> 31);
	}
}

/** @return the next 64 random bits. */
static inline uint64_t
tl_corpus_rng_next(struct tl_corpus_rng *r)
{
	uint64_t *s = r->s;
	uint64_t x = s[1] * 5, res = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = (s[3] << 45) | (s[3] >> 19);
	return res;
}

/** @return a value in [0, n) (n > 0), by multiply-shift (bias < 2^-32 for small n). */
static inline uint32_t
tl_corpus_rng_below(struct tl_corpus_rng *r, uint32_t n)
{
	return (uint32_t)(((tl_corpus_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/** @return a double in [0, 1). */
static inline double
tl_corpus_rng_unit(struct tl_corpus_rng *r)
{
	return (double)(tl_corpus_rng_next(r) >> 11) * 0x1.0p-53;
}

/** @return true with probability @p p. */
static inline bool
tl_corpus_rng_chance(struct tl_corpus_rng *r, double p)
{
	return tl_corpus_rng_unit(r) < p;
}

/* ---- corpus data ---- */

/** Real text loaded from the data folder (immutable, shareable). */
struct tl_corpus;

/**
 * Load the corpus from @p data_dir: tpch/q01.sql..q22.sql, loghub/{Hadoop,HDFS,Spark}_2k.log,
 * spark-eventlog/complex_dec_eventlog.
 * @param data_dir  the shared data folder.
 * @param out       out: the corpus (caller owns; tl_corpus_free).
 * @param msg       buffer for a human-readable reason on failure (may be NULL).
 * @return 0; TL_E_DATA (with @p msg) if a file is missing, unreadable or yields no usable
 *         text; -ENOMEM.
 */
int tl_corpus_load(const char *data_dir, struct tl_corpus **out, char *msg, size_t msglen);

/** Free a corpus. NULL-safe. */
void tl_corpus_free(struct tl_corpus *c);

/* ---- generator ---- */

/** The single fault a malformed event carries (several kinds per reason). */
enum tl_corpus_fault {
	TL_FAULT_NONE = 0,
	TL_FAULT_SYNTAX_CUT,      /**< json_syntax: the line is cut short */
	TL_FAULT_SYNTAX_COMMA,    /**< json_syntax: a comma between members is missing */
	TL_FAULT_SYNTAX_TRAILING, /**< json_syntax: a comma before the closing brace */
	TL_FAULT_UTF8_BYTE,       /**< json_utf8: a byte that starts no UTF-8 sequence */
	TL_FAULT_UTF8_OVERLONG,   /**< json_utf8: an overlong encoding (C0 AF) */
	TL_FAULT_UTF8_SURROGATE,  /**< json_utf8: a lone surrogate escape \ud800 */
	TL_FAULT_DEPTH,           /**< json_depth: payload nested past max_depth */
	TL_FAULT_STRING_LONG,     /**< json_string_too_long: a string past max_string (or
	                               past id_max_len in query_id) in an event that fits */
	TL_FAULT_TOO_LARGE,       /**< event_too_large: the line is longer than max_event_size */
	TL_FAULT_DUP_KEY,      /**< json_duplicate_key: query_id (or metadata.duration_ms) twice */
	TL_FAULT_NUMBER_RANGE, /**< number_range: duration_ms 184467440737095516160 */
	TL_FAULT_TYPE_STRING,  /**< field_type: duration_ms as a string */
	TL_FAULT_TYPE_FLOAT,   /**< field_type: duration_ms 12.5 */
	TL_FAULT_TS_FEB29,     /**< timestamp_invalid: 2023-02-29 */
	TL_FAULT_TS_NOZONE,    /**< timestamp_invalid: no zone */
	TL_FAULT_MISSING_ID,   /**< missing_field: no query_id */
	TL_FAULT_NULL_TYPE,    /**< missing_field: event_type null */
	TL_FAULT_NOT_OBJECT,   /**< json_not_object: the event inside a top-level array */
	TL_FAULT_MAX
};

/** @return the reason the pipeline reports for @p f (TL_REASON_OK for NONE). */
enum tl_reason tl_corpus_fault_reason(enum tl_corpus_fault f);

/** @return a short name of @p f ("syntax_cut", ...); static storage. */
const char *tl_corpus_fault_name(enum tl_corpus_fault f);

/** Generator settings. tl_corpus_conf_defaults() fills the documented defaults. */
struct tl_corpus_conf {
	uint64_t seed;           /**< everything derives from it (default 1) */
	uint64_t max_queries;    /**< stop after this many queries are complete; 0 = no bound */
	double error_share;      /**< share of queries that fail (0.1) */
	double malformed_share;  /**< share of events with a fault (0.05) */
	uint64_t max_event_size; /**< pipeline.max_event_size (60 KiB) */
	uint64_t max_string;     /**< pipeline.max_string (60 KiB) */
	uint64_t max_depth;      /**< pipeline.max_depth (32) */
	uint64_t id_max_len;     /**< max_len of the query_id column (256); 0 = unknown */
	uint32_t min_size;       /**< smallest valid event in bytes (1024) */
	uint32_t max_size;       /**< largest valid event in bytes (5120) */
	uint32_t fault_mask;     /**< bit (1 << fault): kinds allowed; 0 = every feasible one */
	bool truth;              /**< build the truth line of every event */
	double late_share;       /**< share of valid events sent late: their event time is
	                              late_ms behind their query's clock (0) */
	uint64_t late_ms;        /**< how far behind (60000) */
};

/** Fill @p conf with the defaults above. */
void tl_corpus_conf_defaults(struct tl_corpus_conf *conf);

/** One generated event; everything points into the generator, valid until its next call. */
struct tl_corpus_event {
	const uint8_t *data; /**< the NDJSON line, without newline; never contains '\n' */
	uint32_t len;
	uint64_t seq;               /**< 0-based position in generation order */
	uint64_t query;             /**< 0-based index of the query the event belongs to */
	enum tl_reason reason;      /**< verdict the pipeline must give (OK: valid) */
	enum tl_corpus_fault fault; /**< the fault injected (NONE: valid) */
	bool is_error;              /**< valid, with error set, non-null and not "" */
	const char *truth;          /**< truth line without newline (NULL unless conf.truth) */
	uint32_t truth_len;
};

/** Generator state; one per thread. */
struct tl_corpus_gen;

/**
 * Create a generator.
 * @param c     loaded corpus; must outlive the generator.
 * @param conf  settings; copied.
 * @param out   out: the generator (caller owns; tl_corpus_gen_free).
 * @return 0; -EINVAL if a share is outside [0, 1], min_size > max_size, max_size is
 *         below 1024 or above max_event_size, max_string is below 1536, max_depth is
 *         outside 8..1000, max_event_size is below 6144 or above 1 MiB, or fault_mask
 *         allows no feasible kind while malformed_share > 0; -ENOMEM.
 */
int tl_corpus_gen_create(
        const struct tl_corpus *c, const struct tl_corpus_conf *conf, struct tl_corpus_gen **out);

/** Free a generator. NULL-safe. */
void tl_corpus_gen_free(struct tl_corpus_gen *g);

/**
 * Bit mask (1 << fault) of the fault kinds that conf allows and its limits make possible:
 * STRING_LONG needs max_string + 4 KiB <= max_event_size (a payload string past max_string)
 * or else id_max_len > 0 with id_max_len + 64 < max_string (a query_id past its column's
 * max_len); TOO_LARGE needs max_event_size + 64 <= 65507 (one UDP datagram).
 */
uint32_t tl_corpus_gen_faults(const struct tl_corpus_gen *g);

/**
 * Generate the next event.
 * @param g   the generator.
 * @param ev  out: the event (pointers valid until the next call on @p g).
 * @return 0; -ENODATA when conf.max_queries queries are complete.
 */
int tl_corpus_next(struct tl_corpus_gen *g, struct tl_corpus_event *ev);

/**
 * Write the truth line of an event that was lost with its datagram:
 * {"seq":N,"valid":false,"reason":"<name>"}.
 * @return the length (no newline, NUL-terminated), or the length needed if > @p cap.
 */
size_t tl_corpus_truth_lost(uint64_t seq, enum tl_reason reason, char *buf, size_t cap);

/* ---- in-memory batches for `tapline bench` ---- */

/** @p n valid events, each followed by '\n', in one contiguous buffer. */
struct tl_corpus_batch {
	uint8_t *buf;  /**< event i is buf[off[i]] .. buf[off[i + 1] - 2]; '\n' follows it */
	size_t len;    /**< bytes in buf (== off[n]) */
	uint64_t *off; /**< n + 1 offsets */
	uint32_t n;
};

/**
 * Build @p n valid events (conf's malformed_share and truth are ignored).
 * @param c, conf  as for tl_corpus_gen_create().
 * @param n        number of events (> 0).
 * @param out      out: the batch (caller owns; tl_corpus_batch_free).
 * @return 0, -EINVAL (see tl_corpus_gen_create, or n == 0), -ENOMEM.
 */
int tl_corpus_batch_build(const struct tl_corpus *c, const struct tl_corpus_conf *conf, uint32_t n,
        struct tl_corpus_batch *out);

/** Free the batch's buffers and zero it. NULL-safe. */
void tl_corpus_batch_free(struct tl_corpus_batch *b);

#endif
