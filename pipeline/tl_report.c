/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <string.h>

#include "tl_report.h"

/* Room kept at the end of a large enough buffer for the "(N more problems)" line. */
#define TRAILER 40

void
tl_report_printable(char *dst, size_t len, const char *s)
{
	size_t o = 0;

	for (; *s != '\0' && o + 5 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (o > 60) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\')
			o += (size_t)snprintf(dst + o, len - o, "\\x%02x", c);
		else
			dst[o++] = (char)c;
	}
	dst[o] = '\0';
}

void
tl_report_vadd(struct tl_report *r, const char *kind, const char *name,
        const struct tl_opt_loc *loc, const char *fmt, va_list ap)
{
	char line[1536], msg[1024], shown[128];
	size_t n;

	r->n++;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (kind == NULL) {
		snprintf(line, sizeof(line), "%s", msg);
	} else {
		tl_report_printable(shown, sizeof(shown), name ? name : "");
		if (loc != NULL && loc->file[0] != '\0' && loc->line != 0)
			snprintf(line, sizeof(line), "%s:%u: %s '%s': %s", loc->file, loc->line,
			        kind, shown, msg);
		else
			snprintf(line, sizeof(line), "%s '%s': %s", kind, shown, msg);
	}
	if (r->buf == NULL || r->len == 0)
		return;
	n = strlen(line);
	if (r->used + n + (r->used > 0) + 1 > r->len - (r->len > TRAILER * 2 ? TRAILER : 0)) {
		r->dropped++;
		return;
	}
	if (r->used > 0)
		r->buf[r->used++] = '\n';
	memcpy(r->buf + r->used, line, n + 1);
	r->used += n;
}

void
tl_report_add(struct tl_report *r, const char *kind, const char *name, const struct tl_opt_loc *loc,
        const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tl_report_vadd(r, kind, name, loc, fmt, ap);
	va_end(ap);
}

void
tl_report_finish(struct tl_report *r)
{
	if (r->dropped == 0 || r->buf == NULL || r->len == 0)
		return;
	snprintf(r->buf + r->used, r->len - r->used, "%s(%u more problems)", r->used ? "\n" : "",
	        r->dropped);
}
