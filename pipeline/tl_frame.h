/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The framed protocol (docs/protocol.md, "Framed mode"): producers that want their
 * events acknowledged send frames instead of raw NDJSON datagrams; the appliance answers
 * each frame with an ACK once its events are durably committed (or says why not).
 *
 * A frame is one UDP datagram (IP fragments allowed, at most TL_FRAME_MAX bytes). All
 * integers are big-endian (network order).
 *
 *     offset  size  field
 *          0     4  magic        'T' 'L' 'F' '1'
 *          4     1  version      1
 *          5     1  flags        TL_FRAME_F_ZSTD: the body is one zstd frame;
 *                                TL_FRAME_F_HMAC: a 32-byte HMAC-SHA256 tag follows the body
 *          6     2  hdr_len      TL_FRAME_HDR_LEN (later versions may append fields)
 *          8     8  producer_id  non-zero; chosen by the producer, unique per site
 *         16     8  sequence     per producer, 1, 2, 3, ... one per frame (a resend of a
 *                                frame keeps its sequence and its bytes)
 *         24     4  count        events in the body, 1..TL_FRAME_MAX_EVENTS
 *         28     4  body_len     body bytes as sent (compressed when ZSTD)
 *         32     4  raw_len      body bytes after decompression (== body_len without ZSTD)
 *         36     4  key_id       which of the producer's keys made the tag (0 without HMAC)
 *         40     …  body         @c count NDJSON events, each ended by '\n'
 *   40+body_len   32  tag         HMAC-SHA256(key, bytes 0 .. 40 + body_len - 1)
 *
 * The frame must be exactly hdr_len + body_len (+ 32 with HMAC) bytes long.
 *
 * An ACK is one UDP datagram back to the frame's source address and port:
 *
 *     offset  size  field
 *          0     4  magic        'T' 'L' 'A' '1'
 *          4     1  version      1
 *          5     1  status       enum tl_ack_status
 *          6     2  reason       enum tl_frame_reason (TL_FRAME_OK unless rejected)
 *          8     8  producer_id  of the frame
 *         16     8  sequence     of the frame
 *         24     4  count        events of the frame committed (committed, duplicate)
 *         28     4  retry_ms     retry-later: wait at least this long; else 0
 *         32    32  tag          HMAC-SHA256(the frame's key, bytes 0..31) when the frame
 *                                carried one, else absent (ACK is 32 bytes)
 *
 * Everything here is pure computation on caller buffers: no allocation in parse and
 * encode, no I/O; the keys file reader is the only function that opens a file.
 */
#ifndef TL_FRAME_H
#define TL_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TL_FRAME_MAGIC UINT32_C(0x544c4631) /**< "TLF1" as a big-endian u32 */
#define TL_ACK_MAGIC UINT32_C(0x544c4131)   /**< "TLA1" */
#define TL_FRAME_VERSION 1
#define TL_FRAME_HDR_LEN 40
#define TL_FRAME_TAG_LEN 32
#define TL_FRAME_F_ZSTD 0x01u
#define TL_FRAME_F_HMAC 0x02u
#define TL_FRAME_F_KNOWN 0x03u
#define TL_FRAME_MAX 65507u           /**< largest UDP payload over IPv4 */
#define TL_FRAME_MAX_RAW (1u << 20)   /**< largest decompressed body */
#define TL_FRAME_MAX_EVENTS 4096u     /**< events in one frame */
#define TL_ACK_LEN 32                 /**< ACK without tag */
#define TL_ACK_MAX (TL_ACK_LEN + TL_FRAME_TAG_LEN)
#define TL_FRAME_KEY_MAX 64           /**< bytes of one HMAC key */
#define TL_FRAME_MAX_KEYS 4096        /**< (producer, key id) pairs in a keys file */

/** Why a frame is not accepted (stable names: tl_frame_reason_name). */
enum tl_frame_reason {
	TL_FRAME_OK = 0,
	TL_FRAME_TRUNCATED,        /**< shorter than its header, or than hdr_len + body_len */
	TL_FRAME_BAD_MAGIC,        /**< not a frame (a raw NDJSON datagram starts with '{') */
	TL_FRAME_BAD_VERSION,      /**< version or hdr_len this build does not know */
	TL_FRAME_BAD_FLAGS,        /**< unknown flag bits, or key_id != 0 without HMAC */
	TL_FRAME_BAD_LENGTH,       /**< lengths inconsistent: trailing bytes, raw_len != body_len
	                                without ZSTD, raw_len > TL_FRAME_MAX_RAW, body_len or
	                                raw_len 0, frame larger than TL_FRAME_MAX */
	TL_FRAME_BAD_COUNT,        /**< count 0 or above TL_FRAME_MAX_EVENTS or raw_len, or not
	                                the number of '\n'-terminated lines of the body */
	TL_FRAME_BAD_PRODUCER,     /**< producer_id 0 or sequence 0 */
	TL_FRAME_UNKNOWN_KEY,      /**< HMAC with a (producer, key id) the keys file lacks, or no
	                                HMAC while the producer has keys (keys are required then) */
	TL_FRAME_BAD_TAG,          /**< HMAC tag does not verify */
	TL_FRAME_BAD_ZSTD,         /**< the body does not decompress to exactly raw_len bytes */
	TL_FRAME_REASON_MAX
};

/** Status of an ACK. */
enum tl_ack_status {
	TL_ACK_COMMITTED = 0, /**< the frame's events are durably in the spool */
	TL_ACK_DUPLICATE,     /**< this (producer, sequence) was committed before: not again */
	TL_ACK_RETRY_LATER,   /**< not taken (spool over its high-water mark): resend later */
	TL_ACK_REJECTED,      /**< never acceptable as sent: reason says why */
	TL_ACK_STATUS_MAX
};

/** A parsed frame header; pointers point into the buffer given to tl_frame_parse(). */
struct tl_frame_view {
	uint8_t version;
	uint8_t flags;
	uint64_t producer_id;
	uint64_t sequence;
	uint32_t count;
	uint32_t key_id;
	const uint8_t *body; /**< body_len bytes as sent */
	uint32_t body_len;
	uint32_t raw_len;
	const uint8_t *tag; /**< TL_FRAME_TAG_LEN bytes, or NULL without HMAC */
	const uint8_t *signed_bytes; /**< what the tag covers: the header and the body */
	uint32_t signed_len;
};

/** A decoded ACK. */
struct tl_ack {
	uint8_t status; /**< enum tl_ack_status */
	uint16_t reason; /**< enum tl_frame_reason */
	uint64_t producer_id;
	uint64_t sequence;
	uint32_t count;
	uint32_t retry_ms;
};

/** Per-producer HMAC keys (read from a keys file). Opaque. */
struct tl_frame_keys;

/** @return the stable snake_case name of @p r ("frame_bad_tag", ...); static storage. */
const char *tl_frame_reason_name(enum tl_frame_reason r);
/** @return "committed", "duplicate", "retry_later", "rejected", or "?"; static storage. */
const char *tl_ack_status_name(enum tl_ack_status s);

/** @return true if @p buf starts with the frame magic (cheap test for framed vs raw). */
bool tl_frame_is_frame(const uint8_t *buf, size_t len);

/**
 * Check a frame's header and lengths (not the tag, not the body's content) and describe
 * it. Safe on any input (network bytes, fuzzers).
 * @return TL_FRAME_OK and @p v filled; another reason otherwise: then v->producer_id and
 *         v->sequence are the header's (for a rejected ACK) if its version and hdr_len were
 *         known, else 0; v's other fields are unspecified.
 */
enum tl_frame_reason tl_frame_parse(const uint8_t *buf, size_t len, struct tl_frame_view *v);

/**
 * Authenticate a parsed frame: with keys loaded, a producer that has keys must send an
 * HMAC made with one of them (key rotation: several key ids may be valid at once); a
 * producer without keys may send frames without HMAC only if @p keys allows unkeyed
 * producers (tl_frame_keys_load's @p allow_unkeyed). @p keys NULL: no authentication;
 * a tag is then not checked. Constant-time comparison.
 * @return TL_FRAME_OK, TL_FRAME_UNKNOWN_KEY or TL_FRAME_BAD_TAG.
 */
enum tl_frame_reason tl_frame_verify(const struct tl_frame_keys *keys,
		const struct tl_frame_view *v);

/** Per-worker state for decompressing bodies (a zstd context and a raw buffer). Opaque. */
struct tl_frame_inflater;

/** @return 0 and *out; -ENOMEM. */
int tl_frame_inflater_create(struct tl_frame_inflater **out);
/** NULL-safe. */
void tl_frame_inflater_free(struct tl_frame_inflater *z);

/**
 * The frame's events: the body itself, or (ZSTD) the body decompressed into @p z's buffer
 * (valid until the next call with @p z). Also checks that the body holds exactly
 * v->count lines, each ended by '\n'.
 * @return TL_FRAME_OK and *body / *len; TL_FRAME_BAD_ZSTD; TL_FRAME_BAD_COUNT.
 */
enum tl_frame_reason tl_frame_body(struct tl_frame_inflater *z, const struct tl_frame_view *v,
		const uint8_t **body, size_t *len);

/**
 * Encode a frame (the producer library's side; also the tests'). @p events are @p count
 * NDJSON lines, each ended by '\n', @p events_len bytes in all. @p zstd_level > 0
 * compresses the body (only if that makes it smaller; the flag says which). @p key
 * (@p key_len bytes, NULL: no HMAC) signs it with @p key_id.
 * @return bytes written to @p out; -EINVAL (bad arguments, count not the number of
 *         lines, producer or sequence 0); -E2BIG (the frame would exceed @p cap or
 *         TL_FRAME_MAX); -EIO (zstd or HMAC failed).
 */
long tl_frame_encode(uint64_t producer_id, uint64_t sequence, const uint8_t *events,
		size_t events_len, uint32_t count, int zstd_level, const uint8_t *key,
		size_t key_len, uint32_t key_id, uint8_t *out, size_t cap);

/**
 * Encode ACK @p a. With @p key (the key that verified the frame) the ACK is signed; a
 * frame whose producer or sequence could not be read gets no ACK at all (the caller
 * counts it instead).
 * @return bytes written (TL_ACK_LEN or TL_ACK_MAX); -EINVAL (also: reason set unless
 *         rejected, count unless committed/duplicate, retry_ms unless retry-later);
 *         -E2BIG if @p cap is small; -EIO (HMAC failed).
 */
long tl_ack_encode(const struct tl_ack *a, const uint8_t *key, size_t key_len, uint8_t *out,
		size_t cap);

/**
 * Decode an ACK (the producer's side). With @p key the tag must be present and verify.
 * @return 0 and @p a filled; -EBADMSG (not an ACK, bad length, unknown status or reason,
 *         fields that tl_ack_encode() would refuse);
 *         -EACCES (tag missing or wrong when @p key is given).
 */
int tl_ack_parse(const uint8_t *buf, size_t len, const uint8_t *key, size_t key_len,
		struct tl_ack *a);

/**
 * Load a keys file: one key per line, `<producer_id> <key_id> <hex key>` (decimal ids,
 * 16 to TL_FRAME_KEY_MAX bytes of key as hex), '#' comments and blank lines ignored.
 * A producer may have several key ids (rotation). Errors are reported as
 * `file:line: message` in @p err.
 * @param allow_unkeyed  producers with no key may send frames without HMAC.
 * @return 0 and *out; TL_E_CONFIG (a bad line, not a regular file); -errno if the file
 *         cannot be read;
 *         -ENOMEM.
 */
int tl_frame_keys_load(const char *path, bool allow_unkeyed, struct tl_frame_keys **out,
		char *err, size_t errlen);

/** Look up a key. @return the key and *len, or NULL. */
const uint8_t *tl_frame_keys_find(const struct tl_frame_keys *keys, uint64_t producer_id,
		uint32_t key_id, size_t *len);

/** NULL-safe. Wipes the key bytes before freeing them. */
void tl_frame_keys_free(struct tl_frame_keys *keys);

#endif
