/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Named reasons for every packet, datagram or event the pipeline does not accept.
 *
 * Each reason has a stable snake_case name (used in metrics, in `figure rejected_<name>`
 * lines and in the dead-letter table) and a one-line description. Verdict functions in
 * the pipeline return an enum tl_reason; TL_REASON_OK (0) means accepted.
 *
 * Scope of the counter that a reason increments:
 *  - PKT_*: one frame off the wire (dropped before any event could be seen);
 *  - FRAG_*: one IP fragment or one incomplete datagram;
 *  - IGN_*: traffic that is not telemetry: ignored, not an error;
 *  - everything else: one event (one NDJSON line).
 */
#ifndef TL_REASON_H
#define TL_REASON_H

/* X(enum suffix, name, description) */
#define TL_REASON_LIST(X)                                                                     \
	X(OK, "ok", "accepted")                                                               \
	/* --- ignored: not telemetry --- */                                                  \
	X(IGN_NON_IP, "ignored_non_ip", "frame is not IPv4/IPv6 (ARP, LLDP, ...)")            \
	X(IGN_NON_UDP, "ignored_non_udp", "IP packet is not UDP")                             \
	X(IGN_PORT, "ignored_port", "UDP datagram to a port that is not a telemetry port")    \
	/* --- frame / packet level (counted per frame) --- */                                \
	X(PKT_ETH_TRUNCATED, "eth_truncated", "frame shorter than an Ethernet header")        \
	X(PKT_VLAN_TRUNCATED, "vlan_truncated", "frame ends inside a VLAN tag")               \
	X(PKT_VLAN_TOO_DEEP, "vlan_too_deep", "more than two stacked VLAN tags")              \
	X(PKT_IPV4_TRUNCATED, "ipv4_truncated", "frame ends inside the IPv4 header or payload") \
	X(PKT_IPV4_BAD_HEADER, "ipv4_bad_header", "IPv4 version/IHL/total length invalid")    \
	X(PKT_IPV4_BAD_CHECKSUM, "ipv4_bad_checksum", "IPv4 header checksum wrong")           \
	X(PKT_IPV6_TRUNCATED, "ipv6_truncated", "frame ends inside the IPv6 header or payload") \
	X(PKT_IPV6_BAD_HEADER, "ipv6_bad_header", "IPv6 version or extension header invalid") \
	X(PKT_UDP_TRUNCATED, "udp_truncated", "datagram shorter than its UDP header")         \
	X(PKT_UDP_BAD_LENGTH, "udp_bad_length", "UDP length disagrees with the IP length")    \
	X(PKT_UDP_BAD_CHECKSUM, "udp_bad_checksum", "UDP checksum wrong (or zero over IPv6)")  \
	/* --- IP reassembly --- */                                                           \
	X(FRAG_BAD, "frag_bad", "fragment with invalid offset/length (not 8-byte aligned)")   \
	X(FRAG_TOO_BIG, "frag_too_big", "fragments extend past 65535 bytes")                  \
	X(FRAG_OVERLAP, "frag_overlap", "fragments overlap with different data: datagram dropped") \
	X(FRAG_DUPLICATE, "frag_duplicate", "exact duplicate fragment ignored")               \
	X(FRAG_TIMEOUT, "frag_timeout", "datagram incomplete when its reassembly timer expired") \
	X(FRAG_TABLE_FULL, "frag_table_full", "no free reassembly slot: fragment dropped")    \
	X(FRAG_TOO_MANY, "frag_too_many", "datagram split into more fragments than allowed")  \
	/* --- event level (counted per NDJSON line) --- */                                   \
	X(EV_TOO_LARGE, "event_too_large", "event longer than pipeline.max_event_size")       \
	X(EV_JSON_SYNTAX, "json_syntax", "not valid JSON (or trailing bytes after it)")       \
	X(EV_JSON_UTF8, "json_utf8", "invalid UTF-8 or invalid \\u escape")                   \
	X(EV_JSON_DEPTH, "json_depth", "nesting deeper than pipeline.max_depth")              \
	X(EV_JSON_STRING_TOO_LONG, "json_string_too_long", "string longer than pipeline.max_string") \
	X(EV_JSON_NOT_OBJECT, "json_not_object", "top-level value is not an object")          \
	X(EV_JSON_DUPLICATE_KEY, "json_duplicate_key", "a mapped or top-level key appears twice") \
	X(EV_JSON_TOO_MANY_FIELDS, "json_too_many_fields", "more unknown fields than fit in extra") \
	X(EV_FIELD_TYPE, "field_type", "mapped field has the wrong JSON type")                \
	X(EV_NUMBER_RANGE, "number_range", "number does not fit the column type")             \
	X(EV_TIMESTAMP, "timestamp_invalid", "event time is not a valid ISO-8601 timestamp with zone") \
	X(EV_MISSING_FIELD, "missing_field", "a required field is absent or null")

enum tl_reason {
#define TL_REASON_ENUM_(sym, name, desc) TL_REASON_##sym,
	TL_REASON_LIST(TL_REASON_ENUM_)
#undef TL_REASON_ENUM_
		TL_REASON_MAX
};

/** @return the stable snake_case name of @p r ("ok" for TL_REASON_OK); static storage. */
const char *tl_reason_name(enum tl_reason r);

/** @return a one-line description of @p r; static storage. */
const char *tl_reason_desc(enum tl_reason r);

/** @return 1 if @p r only marks non-telemetry traffic (IGN_*), else 0. */
static inline int
tl_reason_is_ignored(enum tl_reason r)
{
	return r >= TL_REASON_IGN_NON_IP && r <= TL_REASON_IGN_PORT;
}

/** @return 1 if @p r is counted per event (an NDJSON line), else 0. */
static inline int
tl_reason_is_event(enum tl_reason r)
{
	return r >= TL_REASON_EV_TOO_LARGE;
}

/**
 * Look a reason up by name.
 * @return the reason, or -1 if @p name names none.
 */
int tl_reason_by_name(const char *name);

#endif
