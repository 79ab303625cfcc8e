/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Spool side data shared by several parts of the appliance.
 *
 * The spool gives every buffer one side area (struct tl_spool_buf.meta) that reaches the
 * transaction hook with the record but is not stored with it, and takes one hook. Two
 * parts need both: framed mode (the frames a record completes, so their ACKs can go
 * once it is committed) and edge rollups (the rollup delta of the record's rows, merged
 * in the same transaction). This splits the area into fixed regions, one per part, each
 * a 4-byte length followed by up to its capacity of bytes, and runs every part's hook
 * in one spool hook, in part order.
 *
 * A buffer whose meta_len is 0 (as the spool hands it out) has every region empty; the
 * first region written clears the others' lengths and sets meta_len to the whole area.
 */
#ifndef TL_SIDE_H
#define TL_SIDE_H

#include <stdint.h>
#include <string.h>

#include "tl_spool.h"

enum tl_side_part {
	TL_SIDE_FRAMED, /**< app/tl_framed.c: (producer, sequence) pairs */
	TL_SIDE_ROLLUP, /**< app/tl_edge.c: a serialised rollup delta */
	TL_SIDE_DEDUP,  /**< app/tl_rawdedup.c: the raw-mode event ids of the batch */
	TL_SIDE_PARTS
};

/** A part's share of each write transaction (see tl_spool_txn_fn). */
typedef int (*tl_side_txn_fn)(
        void *arg, struct tl_spool_txn *txn, const struct tl_spool_buf *const *bufs, unsigned n);

struct tl_side {
	uint32_t off[TL_SIDE_PARTS]; /**< region start (its length word) */
	uint32_t cap[TL_SIDE_PARTS]; /**< region capacity after the length word, 0: unused */
	uint32_t total;              /**< bytes of the whole area */
	tl_side_txn_fn fn[TL_SIDE_PARTS];
	void *arg[TL_SIDE_PARTS];
	bool installed;
};

/** Empty: no part. */
void tl_side_init(struct tl_side *s);

/**
 * Reserve @p cap bytes of each buffer for @p part and register its hook (NULL: none).
 * @return 0; -EINVAL (unknown part, already added, area above 1 MiB); -EBUSY (installed).
 */
int tl_side_add(struct tl_side *s, enum tl_side_part part, uint32_t cap, tl_side_txn_fn fn,
        void *arg);

/**
 * Give the spool the area and the hook (tl_spool_set_hooks); once, before any buffer is
 * taken. Nothing to install (no part) is not an error.
 * @return 0; the errors of tl_spool_set_hooks().
 */
int tl_side_install(struct tl_side *s, struct tl_spool *sp);

/** The region of @p part in @p b, to write up to *@p cap bytes into (NULL: no such part
 *  or no side area). */
static inline uint8_t *
tl_side_region(const struct tl_side *s, struct tl_spool_buf *b, enum tl_side_part part,
        uint32_t *cap)
{
	if (s == NULL || s->cap[part] == 0 || b->meta == NULL || b->meta_cap < s->total)
		return NULL;
	if (b->meta_len == 0) {
		for (int i = 0; i < TL_SIDE_PARTS; i++)
			if (s->cap[i] != 0)
				memset(b->meta + s->off[i], 0, 4);
		b->meta_len = s->total;
	}
	*cap = s->cap[part];
	return b->meta + s->off[part] + 4;
}

/** Say how many bytes of @p part's region were written (0: empty). */
static inline void
tl_side_set_len(const struct tl_side *s, struct tl_spool_buf *b, enum tl_side_part part,
        uint32_t len)
{
	memcpy(b->meta + s->off[part], &len, 4);
}

/** The bytes of @p part in @p b (NULL and 0 when empty). */
static inline const uint8_t *
tl_side_get(const struct tl_side *s, const struct tl_spool_buf *b, enum tl_side_part part,
        uint32_t *len)
{
	uint32_t n;

	*len = 0;
	if (s == NULL || s->cap[part] == 0 || b->meta_len < s->total)
		return NULL;
	memcpy(&n, b->meta + s->off[part], 4);
	if (n == 0 || n > s->cap[part])
		return NULL;
	*len = n;
	return b->meta + s->off[part] + 4;
}

#endif
