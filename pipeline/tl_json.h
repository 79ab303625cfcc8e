/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Strict, single-pass, zero-copy JSON field extractor.
 *
 * Validates the whole event (RFC 8259 grammar, UTF-8 per RFC 3629 with no overlongs,
 * surrogates or code points past U+10FFFF, \u escapes including surrogate pairs, depth
 * and string limits) while extracting the schema's columns in the same pass. Values
 * point into the input. Unknown fields are recorded as spans for the `extra` column;
 * mapped keys and top-level keys must not repeat. AVX2 is used for string scanning
 * when the CPU has it (checked once at start-up), scalar code otherwise.
 *
 * Thread-safety: reentrant; a compiled schema may be shared by all workers.
 */
#ifndef TL_JSON_H
#define TL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "tl_event.h"
#include "tl_reason.h"
#include "tl_schema.h"

/**
 * Extract one event.
 * @param s    compiled schema.
 * @param buf  the event (one NDJSON line, without its newline); need not be terminated.
 * @param len  its length.
 * @param ev   out: the event; every field is (re)initialised. On rejection, ev->raw and
 *             ev->raw_len are still set.
 * @return TL_REASON_OK, or the first reason the event is rejected for (an EV_* reason).
 */
enum tl_reason tl_json_extract(const struct tl_schema *s, const uint8_t *buf, uint32_t len,
		struct tl_event *ev);

/**
 * Decode the escapes of a string value (already validated by tl_json_extract).
 * @param in, in_len  an escaped string's contents (struct tl_value ptr/len).
 * @param out         destination of at least @p in_len bytes (decoding never grows it).
 * @return the number of bytes written.
 */
size_t tl_json_unescape(const uint8_t *in, size_t in_len, uint8_t *out);

/**
 * Parse an ISO-8601 / RFC 3339 timestamp: YYYY-MM-DD(T|t| )hh:mm:ss[.fraction](Z|z|+hh:mm
 * |-hh:mm|+hhmm|-hhmm|+hh|-hh), fraction 1-9 digits, years 1678-2261.
 * @return 0 with *ns set (ns since the epoch, UTC), or -EINVAL.
 */
int tl_json_parse_time(const uint8_t *p, size_t len, int64_t *ns);

/**
 * Write the `extra` column of @p ev as one JSON object: keys are the dotted paths of
 * the unknown fields (e.g. "metadata.engine"), values verbatim. {} if there are none.
 * @return the number of bytes the object needs; writes at most @p cap bytes (like
 *         snprintf, but without a terminating NUL).
 */
size_t tl_json_format_extra(const struct tl_schema *s, const struct tl_event *ev, uint8_t *out,
		size_t cap);

/** @return "avx2" or "scalar": the string scanner chosen at start-up. */
const char *tl_json_impl(void);

#endif
