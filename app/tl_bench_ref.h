/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Reference extractors for `tapline bench`: the same extraction as tl_json_extract
 * (every mapped column located, type-checked and converted, the time parsed) done with
 * jansson and with simdjson's On-Demand API, so figures can be compared in one run.
 */
#ifndef TL_BENCH_REF_H
#define TL_BENCH_REF_H

#include <stddef.h>
#include <stdint.h>

#include "tl_schema.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Events laid out in one buffer; at least 64 readable bytes follow the last one. */
struct tl_bench_events {
	const uint8_t *buf;
	size_t size;          /**< bytes in buf, padding excluded */
	const uint32_t *off;  /**< offset of event i */
	const uint32_t *len;  /**< length of event i */
	uint32_t n;
};

/** @return how many events were accepted (all required columns present and typed). */
uint64_t tl_bench_jansson(const struct tl_schema *s, const struct tl_bench_events *ev);

/** @return how many events were accepted; -1 cast to uint64_t if simdjson failed to init. */
uint64_t tl_bench_simdjson(const struct tl_schema *s, const struct tl_bench_events *ev);

#ifdef __cplusplus
}
#endif

#endif
