/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "tl_dump.h"
#include "tl_json.h"

#define SCRATCH (128 * 1024)

struct tl_dump {
	FILE *f;
	const struct tl_schema *s;
	uint8_t *scratch; /* unescaped values, then the extra object */
	int failed;
};

int
tl_dump_open(const char *path, const struct tl_schema *s, struct tl_dump **out)
{
	struct tl_dump *d = calloc(1, sizeof(*d));

	*out = NULL;
	if (d == NULL)
		return -ENOMEM;
	d->scratch = malloc(SCRATCH);
	if (d->scratch == NULL) {
		free(d);
		return -ENOMEM;
	}
	d->f = fopen(path, "w");
	if (d->f == NULL) {
		int e = -errno;

		free(d->scratch);
		free(d);
		return e;
	}
	setvbuf(d->f, NULL, _IOFBF, 1 << 20);
	d->s = s;
	*out = d;
	return 0;
}

/* Minimal JSON string escaping: quote, backslash and control characters; UTF-8 as is. */
static void
put_string(FILE *f, const uint8_t *p, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void
put_value(struct tl_dump *d, const struct tl_value *v)
{
	switch (v->kind) {
	case TL_VAL_NULL:
		fputs("null", d->f);
		break;
	case TL_VAL_STRING:
		if (v->escaped) {
			size_t n = tl_json_unescape(v->ptr, v->len, d->scratch);

			put_string(d->f, d->scratch, n);
		} else {
			put_string(d->f, v->ptr, v->len);
		}
		break;
	case TL_VAL_RAW:
		put_string(d->f, v->ptr, v->len);
		break;
	case TL_VAL_INT:
		fprintf(d->f, "%" PRId64, v->i);
		break;
	case TL_VAL_UINT:
		fprintf(d->f, "%" PRIu64, v->u);
		break;
	case TL_VAL_FLOAT:
		fprintf(d->f, "%.17g", v->f);
		break;
	case TL_VAL_BOOL:
		fputs(v->b ? "true" : "false", d->f);
		break;
	case TL_VAL_TIME:
		fprintf(d->f, "%" PRId64, v->ns);
		break;
	default:
		fputs("null", d->f);
		break;
	}
}

void
tl_dump_event(void *arg, const struct tl_event *ev, enum tl_reason verdict)
{
	struct tl_dump *d = arg;
	uint32_t n_cols = tl_schema_n_cols(d->s);
	size_t n;
	int first = 1;

	if (verdict != TL_REASON_OK) {
		fprintf(d->f, "{\"valid\":false,\"reason\":\"%s\"}\n", tl_reason_name(verdict));
		return;
	}
	fprintf(d->f, "{\"valid\":true,\"is_error\":%s,\"cols\":{", ev->is_error ? "true" : "false");
	for (uint32_t i = 0; i < n_cols; i++) {
		if (ev->col[i].kind == TL_VAL_ABSENT)
			continue;
		fprintf(d->f, "%s\"%s\":", first ? "" : ",", tl_schema_col(d->s, i)->name);
		put_value(d, &ev->col[i]);
		first = 0;
	}
	fputs("},\"extra\":", d->f);
	n = tl_json_format_extra(d->s, ev, d->scratch, SCRATCH);
	if (n > SCRATCH) {
		d->failed = 1;
		fputs("null", d->f);
	} else {
		fwrite(d->scratch, 1, n, d->f);
	}
	fputs("}\n", d->f);
}

int
tl_dump_close(struct tl_dump *d)
{
	int rc = 0;

	if (d == NULL)
		return 0;
	if (ferror(d->f) || d->failed)
		rc = -EIO;
	if (fclose(d->f) != 0)
		rc = -EIO;
	free(d->scratch);
	free(d);
	return rc;
}
