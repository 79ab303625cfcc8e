/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Problems found while building something from a profile (classify patterns, routing
 * rules), collected as lines `file:line: <kind> '<name>': <message>` into the caller's
 * error buffer. A buffer too small for every line keeps room for a last
 * "(N more problems)" line (tl_report_finish). Names are shown with control bytes, quotes
 * and backslashes escaped (tl_report_printable), so a hostile profile cannot forge lines.
 */
#ifndef TL_REPORT_H
#define TL_REPORT_H

#include <stdarg.h>
#include <stddef.h>

#include "tl_opt.h"

/** The caller's error buffer and what went into it. */
struct tl_report {
	char *buf;        /**< the caller's buffer (NULL: problems are only counted) */
	size_t len;       /**< its size */
	size_t used;      /**< bytes written, without the NUL */
	unsigned n;       /**< problems reported */
	unsigned dropped; /**< problems that did not fit */
};

/**
 * Report one problem. @p kind NULL: @p fmt alone; else the problem is about the element
 * @p kind '@p name' (e.g. "pattern", "routing rule"), written at @p loc (NULL or no
 * file: no location prefix).
 */
void tl_report_add(struct tl_report *r, const char *kind, const char *name,
        const struct tl_opt_loc *loc, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/** tl_report_add() with a va_list. */
void tl_report_vadd(struct tl_report *r, const char *kind, const char *name,
        const struct tl_opt_loc *loc, const char *fmt, va_list ap)
        __attribute__((format(printf, 5, 0)));

/** Append "(N more problems)" when some did not fit. */
void tl_report_finish(struct tl_report *r);

/** @p s made safe to print into @p dst (@p len bytes): controls, quotes and backslashes
 * as \\xHH, cut at about 60 bytes. */
void tl_report_printable(char *dst, size_t len, const char *s);

#endif
