/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The batch: a run of ClickHouse RowBinary rows for one table, as the encoder seals it,
 * the spool stores it (one record payload) and the uplink sends it.
 *
 * Layout (all integers little-endian, no padding, no alignment required):
 *
 *     offset  size  field
 *          0     4  magic        'T' 'L' 'B' '1' (TL_BATCH_MAGIC as a LE u32)
 *          4     2  version      1
 *          6     2  flags        TL_BATCH_F_GZIP: the body is one gzip member;
 *                                TL_BATCH_F_LZ4: the body is one LZ4 block
 *          8     2  table        enum tl_batch_table
 *         10     2  producer     worker that encoded the batch
 *         12     4  rows         1..TL_BATCH_MAX_ROWS
 *         16     4  body_len     bytes of the body as stored (compressed if GZIP)
 *         20     4  offsets_len  4 * rows
 *         24     8  batch_id     unique per appliance; also in every row's batch_id column
 *         32     8  created_ns   CLOCK_REALTIME of the batch's first row
 *         40     8  min_event_ns smallest event time of its rows (i64)
 *         48     8  max_event_ns largest event time of its rows (i64)
 *         56     4  schema_gen   generation of the profile's schema the rows follow
 *         60     4  route        destination: 0 the default route (uplink.database), else
 *                                tl_route_id() of the route's database and table
 *         64  4*rows row_end[]   end offset of each row in the *uncompressed* body,
 *                                strictly increasing; the last one is the body's
 *                                uncompressed length (<= TL_BATCH_MAX_BODY)
 *    64+4*rows body_len body     RowBinary rows, compressed when GZIP or LZ4 is set
 *
 * The header plus row ends lets the uplink split a batch ClickHouse rejected (bisection)
 * without re-encoding, and lets `spool dump` show a batch without decompressing it. For
 * dead_letter rows the event times are the ingestion times.
 *
 * tl_batch_parse() is safe on any input (spool records, files, fuzzers): it checks every
 * length and offset before anything is read through the view.
 */
#ifndef TL_BATCH_H
#define TL_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TL_BATCH_MAGIC UINT32_C(0x31424c54) /**< "TLB1" in file byte order */
#define TL_BATCH_VERSION 1
#define TL_BATCH_HDR_LEN 64
#define TL_BATCH_F_GZIP 0x0001u  /**< body is gzip (RFC 1952), one member */
/**
 * Body is one LZ4 block (the LZ4 block format, no frame) that decompresses to exactly
 * the last row end. The same block ClickHouse's native compression carries, so the uplink
 * can forward it with `decompress=1` after prefixing ClickHouse's 25-byte block header,
 * without decompressing it.
 */
#define TL_BATCH_F_LZ4 0x0002u
#define TL_BATCH_F_KNOWN 0x0003u /**< every flag this version defines */
#define TL_BATCH_F_COMPRESSED (TL_BATCH_F_GZIP | TL_BATCH_F_LZ4)

/** How the encoder compresses a batch's body (`batch.compression`). Stored as flags. */
enum tl_batch_codec {
	TL_BATCH_CODEC_NONE = 0, /**< stored as is */
	TL_BATCH_CODEC_GZIP = 1, /**< libdeflate gzip, TL_BATCH_F_GZIP */
	TL_BATCH_CODEC_LZ4 = 2,  /**< liblz4 block, TL_BATCH_F_LZ4 */
};
/** Most rows in one batch. */
#define TL_BATCH_MAX_ROWS (UINT32_C(1) << 20)
/** Largest uncompressed body (bounds what a reader must allocate to inflate one). */
#define TL_BATCH_MAX_BODY (UINT32_C(256) << 20)

/** Target table of a batch. The numbers are stored: never renumber. */
enum tl_batch_table {
	TL_BATCH_SINK_OUTPUT = 0,  /**< accepted, non-error events */
	TL_BATCH_ERROR_EVENTS = 1, /**< accepted error events */
	TL_BATCH_DEAD_LETTER = 2,  /**< rejected events: reason and raw bytes */
	TL_BATCH_ROLLUPS = 3,      /**< edge rollups (written by the spool's writer, route 0) */
	TL_BATCH_TABLE_MAX
};

/** The tables a worker's sink writes rows of events into (all before TL_BATCH_ROLLUPS). */
#define TL_BATCH_EVENT_TABLES TL_BATCH_ROLLUPS

/** @return the ClickHouse table name of @p t ("sink_output", ...), or NULL if invalid. */
static inline const char *
tl_batch_table_name(unsigned t)
{
	static const char *const names[TL_BATCH_TABLE_MAX] = {
	        [TL_BATCH_SINK_OUTPUT] = "sink_output",
	        [TL_BATCH_ERROR_EVENTS] = "error_events",
	        [TL_BATCH_DEAD_LETTER] = "dead_letter",
	        [TL_BATCH_ROLLUPS] = "rollups",
	};

	return t < TL_BATCH_TABLE_MAX ? names[t] : NULL;
}

/** The header, decoded into host byte order. */
struct tl_batch_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t flags;
	uint16_t table;
	uint16_t producer;
	uint32_t rows;
	uint32_t body_len;
	uint32_t offsets_len;
	uint64_t batch_id;
	uint64_t created_ns;
	int64_t min_event_ns;
	int64_t max_event_ns;
	uint32_t schema_gen;
	uint32_t route;
};

/** A parsed batch. Every pointer points into the buffer given to tl_batch_parse(). */
struct tl_batch_view {
	struct tl_batch_hdr hdr;
	const uint8_t *row_end; /**< hdr.rows LE u32 values (unaligned): tl_batch_row_end() */
	const uint8_t *body;    /**< hdr.body_len bytes, as stored */
	uint32_t raw_len;       /**< uncompressed body length (the last row end) */
};

/** Little-endian load/store helpers for the format (any alignment, any host order). */
static inline uint32_t
tl_batch_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t
tl_batch_le64(const uint8_t *p)
{
	return (uint64_t)tl_batch_le32(p) | (uint64_t)tl_batch_le32(p + 4) << 32;
}

static inline void
tl_batch_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void
tl_batch_put64(uint8_t *p, uint64_t v)
{
	tl_batch_put32(p, (uint32_t)v);
	tl_batch_put32(p + 4, (uint32_t)(v >> 32));
}

/**
 * Write @p h as the 64 header bytes at @p out (no validation: the writer's job).
 */
static inline void
tl_batch_hdr_write(const struct tl_batch_hdr *h, uint8_t *out)
{
	tl_batch_put32(out + 0, h->magic);
	out[4] = (uint8_t)h->version;
	out[5] = (uint8_t)(h->version >> 8);
	out[6] = (uint8_t)h->flags;
	out[7] = (uint8_t)(h->flags >> 8);
	out[8] = (uint8_t)h->table;
	out[9] = (uint8_t)(h->table >> 8);
	out[10] = (uint8_t)h->producer;
	out[11] = (uint8_t)(h->producer >> 8);
	tl_batch_put32(out + 12, h->rows);
	tl_batch_put32(out + 16, h->body_len);
	tl_batch_put32(out + 20, h->offsets_len);
	tl_batch_put64(out + 24, h->batch_id);
	tl_batch_put64(out + 32, h->created_ns);
	tl_batch_put64(out + 40, (uint64_t)h->min_event_ns);
	tl_batch_put64(out + 48, (uint64_t)h->max_event_ns);
	tl_batch_put32(out + 56, h->schema_gen);
	tl_batch_put32(out + 60, h->route);
}

/**
 * Decode the 64 header bytes at @p in into @p h (no validation; tl_batch_parse checks).
 */
static inline void
tl_batch_hdr_read(const uint8_t *in, struct tl_batch_hdr *h)
{
	h->magic = tl_batch_le32(in + 0);
	h->version = (uint16_t)(in[4] | in[5] << 8);
	h->flags = (uint16_t)(in[6] | in[7] << 8);
	h->table = (uint16_t)(in[8] | in[9] << 8);
	h->producer = (uint16_t)(in[10] | in[11] << 8);
	h->rows = tl_batch_le32(in + 12);
	h->body_len = tl_batch_le32(in + 16);
	h->offsets_len = tl_batch_le32(in + 20);
	h->batch_id = tl_batch_le64(in + 24);
	h->created_ns = tl_batch_le64(in + 32);
	h->min_event_ns = (int64_t)tl_batch_le64(in + 40);
	h->max_event_ns = (int64_t)tl_batch_le64(in + 48);
	h->schema_gen = tl_batch_le32(in + 56);
	h->route = tl_batch_le32(in + 60);
}

/**
 * Validate a batch and describe it.
 *
 * Checks: length >= header; magic; version; no unknown flag; table known; 1 <= rows <=
 * TL_BATCH_MAX_ROWS; offsets_len == 4 * rows; header + offsets + body_len == @p len
 * exactly; row ends strictly increasing from > 0; last row end <= TL_BATCH_MAX_BODY and,
 * uncompressed, == body_len; GZIP and LZ4 not both set; min_event_ns <= max_event_ns. A compressed body itself is checked by tl_batch_inflate().
 *
 * @param buf  the batch (any alignment); must stay valid while @p view is used.
 * @param len  its length.
 * @param view out: the batch's parts (unchanged on failure).
 * @return 0; -EBADMSG if it is not a well-formed batch; -EPROTONOSUPPORT if the magic is
 *         right but the version or a flag is unknown (a newer writer).
 * Thread-safety: reentrant.
 */
int tl_batch_parse(const void *buf, size_t len, struct tl_batch_view *view);

/** @return the end of row @p i (< view->hdr.rows) in the uncompressed body. */
static inline uint32_t
tl_batch_row_end(const struct tl_batch_view *v, uint32_t i)
{
	return tl_batch_le32(v->row_end + 4 * (size_t)i);
}

/** @return the start of row @p i (< view->hdr.rows) in the uncompressed body. */
static inline uint32_t
tl_batch_row_start(const struct tl_batch_view *v, uint32_t i)
{
	return i == 0 ? 0 : tl_batch_row_end(v, i - 1);
}

/**
 * The uncompressed body of a parsed batch.
 *
 * @param v     a view from tl_batch_parse().
 * @param out   where a compressed body is inflated (unused otherwise; may be NULL then).
 * @param cap   bytes at @p out; v->raw_len is enough.
 * @param body  out: the uncompressed body, v->raw_len bytes: v->body itself when the
 *              batch is not compressed, else @p out.
 * @return 0; -ENOSPC if @p cap < v->raw_len; -EBADMSG if the gzip member or LZ4 block is
 *         corrupt or does not inflate to exactly v->raw_len bytes; -ENOMEM. A gzip body
 *         allocates a decompressor per call (use tl_batch_inflate_with() on hot paths);
 *         LZ4 allocates nothing.
 */
int tl_batch_inflate(const struct tl_batch_view *v, uint8_t *out, size_t cap, const uint8_t **body);

struct libdeflate_decompressor;

/**
 * tl_batch_inflate() with the caller's gzip decompressor (@p gz; NULL: allocate one per
 * call), for loops that inflate many batches. Same results.
 */
int tl_batch_inflate_with(struct libdeflate_decompressor *gz, const struct tl_batch_view *v,
        uint8_t *out, size_t cap, const uint8_t **body);

#endif
