/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Events -> ClickHouse RowBinary rows, collected into batches (see tl_batch.h).
 *
 * One encoder per worker per table. The caller (the worker's event sink) picks the
 * encoder with tl_encode_table_for(), appends the event, and when an append reports the
 * batch full (rows or bytes reached), or when rows have waited long enough
 * (tl_encode_pending / tl_encode_first_ns), seals the batch into a spool buffer.
 * Everything is allocated by tl_encoder_create(); appending and sealing allocate nothing,
 * take no lock and make no system call.
 *
 * Columns of sink_output and error_events (tl_encode_columns() lists them with their
 * ClickHouse types; the DDL is generated from that list):
 *  - the profile's columns in schema order. Types: string -> String, any -> String
 *    (a JSON string's decoded contents, any other JSON value verbatim), int64 -> Int64,
 *    uint64 -> UInt64, float64 -> Float64, bool -> UInt8 (0/1), datetime -> DateTime
 *    (UInt32 seconds, clamped to [1970-01-01 00:00:00, 2106-02-07 06:28:15]) followed by
 *    a column `<name>_ns` Int64 with the exact nanoseconds since the epoch. A column that
 *    is not `required` is Nullable(T): absent and JSON null are both NULL.
 *  - ingestion_time DateTime, ingestion_time_ns Int64 (the @p now_ns given),
 *    event_id FixedString(16), producer_id UInt64, sequence UInt64, late UInt8,
 *    appliance_id String, batch_id UInt64, extra String (tl_json_format_extra()).
 * Columns of dead_letter: ingestion_time DateTime, ingestion_time_ns Int64,
 * appliance_id String, producer_id UInt64, reason String (tl_reason_name()),
 * raw String (the event's bytes, at most tl_encode_raw_max() of them), batch_id UInt64.
 *
 * event_id: XXH3-128 (seed 0) of the row's bytes from its first column up to (not
 * including) ingestion_time, i.e. the RowBinary encoding of every profile column of the
 * event; stored in canonical (big-endian) byte order, so hex(event_id) in ClickHouse is
 * the usual XXH128 hex string. That encoding is canonical: strings are decoded, numbers
 * are values, key order and whitespace do not matter, and it holds the query id, event
 * type, event time (ns) and payload; ingestion time, batch and unknown fields are not in
 * it, so a producer's retransmission gets the same id.
 *
 * batch_id: a random 64-bit base from getrandom() at tl_encoder_create(), plus the number
 * of batches the encoder sealed before (mod 2^64). See tl_encode.c for why collisions are
 * negligible.
 *
 * Thread-safety: an encoder belongs to one thread. The schema is only read.
 */
#ifndef TL_ENCODE_H
#define TL_ENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_batch.h"
#include "tl_event.h"
#include "tl_reason.h"
#include "tl_schema.h"

/** Longest appliance id (bytes). */
#define TL_ENCODE_APPLIANCE_MAX 255
/** Most columns a table can have: every profile column a datetime, plus tapline's. */
#define TL_ENCODE_MAX_COLS (2 * TL_SCHEMA_MAX_COLS + 16)
/** ClickHouse type of the severity column (enum tl_classify_severity), as the server
 * spells it back. */
#define TL_ENCODE_SEVERITY_TYPE                                                                    \
	"Enum8('none' = 0, 'info' = 1, 'warning' = 2, 'error' = 3, 'critical' = 4)"
/** Size of struct tl_encode_col's name (a profile name plus "_ns", and NUL). */
#define TL_ENCODE_COL_NAME_MAX (TL_SCHEMA_NAME_MAX + 8)

/** Encoder settings. */
struct tl_encode_conf {
	const char *appliance_id; /**< written into every row; copied; <= 255 bytes */
	uint16_t producer;        /**< worker id: the header's producer field */
	uint32_t batch_rows;      /**< full at this many rows: 1..TL_BATCH_MAX_ROWS */
	uint32_t batch_bytes;     /**< full at this many uncompressed body bytes (>= 1) */
	int codec;                /**< enum tl_batch_codec */
	int gzip_level;           /**< GZIP: libdeflate level 1..12 (ignored otherwise) */
	uint32_t schema_gen;      /**< copied into every header */
	uint32_t route;           /**< copied into every header: 0 default, else tl_route_id() */
};

/** Per-event source information a capture mode may know (framed mode, watermark). */
struct tl_encode_meta {
	uint64_t producer_id; /**< the producer (framed mode); 0 in raw mode */
	uint64_t sequence;    /**< the producer's sequence number; 0 in raw mode */
	bool late;            /**< behind the watermark */
};

/** One column of a table, in the order the encoder writes it. */
struct tl_encode_col {
	char name[TL_ENCODE_COL_NAME_MAX];
	char type[96]; /**< ClickHouse type, e.g. "Nullable(String)" */
};

/** Opaque encoder. */
struct tl_encoder;

/**
 * List the columns of table @p t for schema @p s, in the order rows are written.
 * @param s     compiled schema (may be NULL for TL_BATCH_DEAD_LETTER, which has no profile
 *              columns).
 * @param cols  out: @p cap entries; TL_ENCODE_MAX_COLS always suffice.
 * @param n     out: number of columns.
 * @return 0; -EINVAL if @p t is not a table (or @p s is NULL for another table); -ENOSPC
 *         if @p cap is too small; TL_E_SCHEMA if a profile column's
 *         name (or the `<name>_ns` of a datetime) equals another column's (e.g. a profile
 *         column called `extra` or `batch_id`).
 */
int tl_encode_columns(const struct tl_schema *s, enum tl_batch_table t, struct tl_encode_col *cols,
        uint32_t cap, uint32_t *n);

/**
 * Create an encoder.
 * @param s     compiled schema; must outlive the encoder. Its limits bound the largest row.
 * @param t     the table whose rows it writes.
 * @param conf  settings; copied.
 * @param out   out: the encoder (caller owns; tl_encoder_free). NULL on failure.
 * @return 0; -EINVAL (bad table, conf out of range, appliance id NULL or too long, or a
 *         largest batch above TL_BATCH_MAX_BODY); TL_E_SCHEMA (see tl_encode_columns);
 *         -ENOMEM; -errno of getrandom().
 */
int tl_encoder_create(const struct tl_schema *s, enum tl_batch_table t,
        const struct tl_encode_conf *conf, struct tl_encoder **out);

/** Free an encoder (pending rows are lost). NULL-safe. */
void tl_encoder_free(struct tl_encoder *enc);

/**
 * The table an event goes to.
 * @return TL_BATCH_DEAD_LETTER if @p verdict is not TL_REASON_OK, TL_BATCH_ERROR_EVENTS
 *         if @p ev is an error event, else TL_BATCH_SINK_OUTPUT.
 */
static inline enum tl_batch_table
tl_encode_table_for(const struct tl_event *ev, enum tl_reason verdict)
{
	if (verdict != TL_REASON_OK)
		return TL_BATCH_DEAD_LETTER;
	return ev->is_error ? TL_BATCH_ERROR_EVENTS : TL_BATCH_SINK_OUTPUT;
}

/**
 * Append one accepted event's row (raw mode: producer_id and sequence 0, not late).
 * @param enc     a sink_output or error_events encoder.
 * @param ev      the event as tl_json_extract() produced it (or an equivalent one).
 * @param now_ns  CLOCK_REALTIME in ns: the row's ingestion time.
 * @return 1 if the row was appended and the batch is now full (seal it), 0 if appended
 *         and not full; -ENOBUFS if the row does not fit in what remains (nothing
 *         appended: seal and append again); -E2BIG if it would not fit an empty batch
 *         either (values longer than the schema's limits allow); -EINVAL if @p enc is a
 *         dead_letter encoder or ev->n_extra > TL_EVENT_MAX_EXTRA.
 */
/** The event_id of the last event row written (tl_encode_event[_meta]). */
void tl_encode_last_id(const struct tl_encoder *enc, uint8_t id[16]);

/**
 * Take the last row back out of the pending batch (a duplicate found after encoding it:
 * its id is known only then). The batch's event-time range is not narrowed again.
 * @return 0; -EINVAL (no row pending).
 */
int tl_encode_drop_last(struct tl_encoder *enc);

struct tl_rollup_row;

/**
 * Append one edge-rollup row (pipeline/tl_rollup.h) to a TL_BATCH_ROLLUPS encoder.
 * Columns (tl_encode_columns): window_start DateTime, window_ns Int64, event_type String,
 * database String, correction UInt8, count, errors, late, with_duration,
 * duration_sum_ms UInt64, h00..h31 UInt64 (log2 duration buckets), ingestion_time
 * DateTime, appliance_id String, batch_id UInt64, event_id FixedString(16) (a hash of the
 * row, its batch and its index there: the uplink repairs partial landings by it).
 * @return 0 (room left), 1 (batch now full), -ENOBUFS (full: seal first), -EINVAL.
 */
int tl_encode_rollup(struct tl_encoder *enc, const struct tl_rollup_row *r, int64_t now_ns);

int tl_encode_event(struct tl_encoder *enc, const struct tl_event *ev, int64_t now_ns);

/** tl_encode_event() with source information (@p meta NULL: as tl_encode_event). */
int tl_encode_event_meta(struct tl_encoder *enc, const struct tl_event *ev,
        const struct tl_encode_meta *meta, int64_t now_ns);

/**
 * Append a dead_letter row for a rejected event: the reason's name and ev->raw (the first
 * tl_encode_raw_max() bytes of it: an event_too_large line may be longer).
 * @param enc      a dead_letter encoder.
 * @param verdict  why it was rejected (not TL_REASON_OK).
 * @return as tl_encode_event(); -EINVAL if @p enc is not a dead_letter encoder or
 *         @p verdict is OK or not a reason.
 */
int tl_encode_reject(
        struct tl_encoder *enc, const struct tl_event *ev, enum tl_reason verdict, int64_t now_ns);

/**
 * Compute the event_id tl_encode_event() would write for @p ev (for deduplication before
 * encoding). Uses the encoder's scratch space; the pending batch is not touched.
 * @param id  out: 16 bytes, canonical byte order (as stored in the table).
 * @return 0; -E2BIG as tl_encode_event; -EINVAL for a dead_letter encoder.
 */
int tl_encode_event_id(struct tl_encoder *enc, const struct tl_event *ev, uint8_t id[16]);

/** @return the number of rows waiting in the current batch. */
uint32_t tl_encode_pending(const struct tl_encoder *enc);

/** @return the now_ns of the current batch's first row (meaningful if rows are pending). */
int64_t tl_encode_first_ns(const struct tl_encoder *enc);

/** @return the batch_id of the current (next sealed) batch. */
uint64_t tl_encode_batch_id(const struct tl_encoder *enc);

/** @return the longest raw event a dead_letter row keeps (max(max_event_size, 65535)). */
uint32_t tl_encode_raw_max(const struct tl_encoder *enc);

/**
 * @return the largest sealed batch this encoder can produce (header, batch_rows row
 *         ends, and the largest body, gzip'd or not): a spool buffer of this size never
 *         gets -ENOSPC from tl_encode_seal().
 */
size_t tl_encode_seal_max(const struct tl_encoder *enc);

/**
 * Seal the current batch into @p out: header, row ends, body (gzip'd when the level is
 * > 0), and start the next batch (new batch_id).
 * @param out  destination (any alignment).
 * @param cap  its size.
 * @param len  out: bytes written.
 * @return 0; -ENODATA if no row is pending; -ENOSPC if @p cap is too small (the batch
 *         stays pending, nothing is lost).
 */
int tl_encode_seal(struct tl_encoder *enc, void *out, size_t cap, size_t *len);

#endif
