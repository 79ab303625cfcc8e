/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdbool.h>

#include "tl_side.h"

#define SIDE_MAX (1u << 20) /* the spool's limit for a side area */

void
tl_side_init(struct tl_side *s)
{
	memset(s, 0, sizeof(*s));
}

int
tl_side_add(struct tl_side *s, enum tl_side_part part, uint32_t cap, tl_side_txn_fn fn,
        void *arg)
{
	uint64_t total;

	if (s == NULL || (unsigned)part >= TL_SIDE_PARTS || cap == 0 || s->cap[part] != 0)
		return -EINVAL;
	if (s->installed)
		return -EBUSY;
	/* Length words stay 4-byte aligned. */
	total = s->total + 4 + (uint64_t)((cap + 3) & ~3u);
	if (total > SIDE_MAX)
		return -EINVAL;
	s->off[part] = s->total;
	s->cap[part] = cap;
	s->total = (uint32_t)total;
	s->fn[part] = fn;
	s->arg[part] = arg;
	return 0;
}

static int
on_txn(void *arg, struct tl_spool_txn *txn, const struct tl_spool_buf *const *bufs, unsigned n)
{
	const struct tl_side *s = arg;

	for (int i = 0; i < TL_SIDE_PARTS; i++) {
		int rc;

		if (s->fn[i] == NULL)
			continue;
		rc = s->fn[i](s->arg[i], txn, bufs, n);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int
tl_side_install(struct tl_side *s, struct tl_spool *sp)
{
	struct tl_spool_hooks h = {.meta_size = s->total, .on_txn = on_txn, .arg = s};
	int rc;

	if (s->total == 0)
		return 0;
	rc = tl_spool_set_hooks(sp, &h);
	if (rc == 0)
		s->installed = true;
	return rc;
}
