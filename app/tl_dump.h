/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Event dump: an event sink that writes each extracted event as one canonical JSON line
 * (the same form `tapline gen --truth` writes), so replays can be compared field by
 * field. One dump per worker: no locks. Not for production rates.
 *
 * Line forms:
 *   {"valid":true,"is_error":B,"cols":{<column>:<value>,...},"extra":{...}}
 *   {"valid":false,"reason":"<reason name>"}
 * Values: strings decoded (then re-escaped minimally), datetime as integer ns UTC,
 * integers as integers, null as null, non-string values of `any` columns as a string
 * holding the JSON text as written. Absent columns are omitted.
 */
#ifndef TL_DUMP_H
#define TL_DUMP_H

#include <stdio.h>

#include "tl_event.h"
#include "tl_reason.h"
#include "tl_schema.h"

struct tl_dump;

/**
 * Open a dump file.
 * @return 0 with *out set (tl_dump_close), -errno from fopen, -ENOMEM.
 */
int tl_dump_open(const char *path, const struct tl_schema *s, struct tl_dump **out);

/** A tl_event_sink_fn: @p arg is a struct tl_dump. */
void tl_dump_event(void *arg, const struct tl_event *ev, enum tl_reason verdict);

/** Flush and close. @return 0, or -EIO if anything could not be written. NULL-safe. */
int tl_dump_close(struct tl_dump *d);

#endif
