/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the rollup's byte formats: the same bytes are merged as a batch
 * delta ('TLRD') and loaded as a state image ('TLRS').
 *
 * Input: one byte of flags, then the image. Flag bit 0: overwrite the image's last 8
 * bytes with its XXH64 before use, so the fuzzer gets past the checksum and explores the
 * parsers (without it, only the checksum and the lengths before it are reached).
 *
 * Tables are tiny (4 open cells, 3 streams), so forced emission, stream eviction and
 * -ENOSPC are reached with short inputs.
 *
 * Invariants: merge and load return 0, -EBADMSG or -ENOSPC and nothing else; a refused
 * merge changes nothing, a refused load leaves the state empty (-EBADMSG) or as it was
 * (-ENOSPC); every row emitted is well formed (keys NUL-terminated at their lengths,
 * window aligned, errors, late and dur_count within count); a state that loads saves
 * back to an image that loads and saves to the same bytes; a merged state saves, loads
 * into a second rollup, and both emit the same rows.
 *
 * Run: build-asan/tests/fuzz_rollup -max_total_time=60 tests/fuzz/corpus_rollup
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "tl_rollup.h"
#include "tl_test_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ROWS 64
#define IMG_MAX (1 << 16)

static struct tl_rollup_conf conf = {
        .enabled = true,
        .window_ns = 1000000000ull,
        .lateness_ns = 2000000000ull,
        .idle_ns = 5000000000ull,
        .max_streams = 3,
        .max_cells = 4,
        .delta_cells = 4,
        .delta_streams = 4,
};

static uint8_t img1[IMG_MAX], img2[IMG_MAX];
static struct tl_rollup_row rows1[MAX_ROWS], rows2[MAX_ROWS];

static void
check_row(const struct tl_rollup_row *r)
{
	TL_FUZZ_CHECK(r->count >= 1);
	TL_FUZZ_CHECK(r->errors <= r->count && r->late <= r->count && r->dur_count <= r->count);
	TL_FUZZ_CHECK(r->window_ns % (int64_t)conf.window_ns == 0);
	TL_FUZZ_CHECK(r->type_len <= TL_ROLLUP_KEY_MAX && r->db_len <= TL_ROLLUP_KEY_MAX);
	TL_FUZZ_CHECK(r->event_type[r->type_len] == '\0' && r->database[r->db_len] == '\0');
	for (unsigned b = 0; b < TL_ROLLUP_HIST; b++)
		TL_FUZZ_CHECK(r->hist[b] <= r->dur_count);
	(void)tl_rollup_p95_ms(r->hist);
}

/* Drain @p r with emit_all; @return the number of rows (at most MAX_ROWS kept). */
static unsigned
drain(struct tl_rollup *r, struct tl_rollup_row *rows)
{
	unsigned n = 0, k;

	while ((k = tl_rollup_emit_all(r, rows + n, MAX_ROWS - n)) > 0) {
		for (unsigned i = 0; i < k; i++)
			check_row(&rows[n + i]);
		n += k;
		TL_FUZZ_CHECK(n <= MAX_ROWS); /* 2 x 4 cells at most */
		if (n == MAX_ROWS)
			break;
	}
	return n;
}

static bool
row_eq(const struct tl_rollup_row *a, const struct tl_rollup_row *b)
{
	return a->window_ns == b->window_ns && a->count == b->count && a->errors == b->errors &&
	       a->late == b->late && a->dur_count == b->dur_count &&
	       a->duration_sum_ms == b->duration_sum_ms &&
	       memcmp(a->hist, b->hist, sizeof(a->hist)) == 0 && a->correction == b->correction &&
	       a->type_len == b->type_len && a->db_len == b->db_len &&
	       strcmp(a->event_type, b->event_type) == 0 && strcmp(a->database, b->database) == 0;
}

/* Save @p a, load into @p b, save again: the same bytes; then both emit the same rows. */
static void
round_trip(struct tl_rollup *a, struct tl_rollup *b)
{
	long n1, n2;
	unsigned k1, k2;

	n1 = tl_rollup_save(a, img1, sizeof(img1));
	TL_FUZZ_CHECK(n1 > 0 && (size_t)n1 == tl_rollup_save_size(a));
	TL_FUZZ_CHECK(tl_rollup_load(b, img1, (size_t)n1) == 0);
	n2 = tl_rollup_save(b, img2, sizeof(img2));
	TL_FUZZ_CHECK(n1 == n2 && memcmp(img1, img2, (size_t)n1) == 0);
	k1 = drain(a, rows1);
	k2 = drain(b, rows2);
	TL_FUZZ_CHECK(k1 == k2);
	for (unsigned i = 0; i < k1; i++)
		TL_FUZZ_CHECK(row_eq(&rows1[i], &rows2[i]));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tl_rollup *r, *r2;
	struct tl_rollup_stats st;
	struct tl_rollup_row row;
	uint8_t *buf;
	bool reseal;
	int rc;

	if (size < 1)
		return 0;
	reseal = data[0] & 1;
	data++;
	size--;
	/* A private copy of exactly the input's size: any read past it is caught. */
	buf = malloc(size ? size : 1);
	TL_FUZZ_CHECK(buf != NULL);
	if (size)
		memcpy(buf, data, size);
	if (reseal && size >= 8) {
		uint64_t h = XXH64(buf, size - 8, 0);

		for (int i = 0; i < 8; i++)
			buf[size - 8 + i] = (uint8_t)(h >> (8 * i));
	}
	TL_FUZZ_CHECK(tl_rollup_create(&conf, &r) == 0);
	TL_FUZZ_CHECK(tl_rollup_create(&conf, &r2) == 0);

	/* as a delta, merged twice (the second may find no room) */
	for (int i = 0; i < 2; i++) {
		struct tl_rollup_stats before;

		tl_rollup_stats(r, &before);
		rc = tl_rollup_merge(r, buf, size, 1000000000ull * (uint64_t)(i + 1));
		TL_FUZZ_CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOSPC);
		tl_rollup_stats(r, &st);
		if (rc != 0) {
			TL_FUZZ_CHECK(st.merged_cells == before.merged_cells);
			TL_FUZZ_CHECK(st.cells == before.cells && st.streams == before.streams);
		}
		TL_FUZZ_CHECK(st.cells <= 2 * conf.max_cells && st.streams <= conf.max_streams);
		if (tl_rollup_emit(r, 1000000000ull * (uint64_t)(i + 1), &row, 1) == 1)
			check_row(&row);
	}
	round_trip(r, r2);

	/* as a state image */
	rc = tl_rollup_load(r, buf, size);
	TL_FUZZ_CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOSPC);
	tl_rollup_stats(r, &st);
	if (rc == -EBADMSG)
		TL_FUZZ_CHECK(st.cells == 0 && st.streams == 0);
	if (rc == 0) {
		TL_FUZZ_CHECK(st.cells <= 2 * conf.max_cells && st.streams <= conf.max_streams);
		round_trip(r, r2);
	}

	tl_rollup_free(r);
	tl_rollup_free(r2);
	free(buf);
	return 0;
}
