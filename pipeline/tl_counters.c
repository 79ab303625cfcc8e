/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>

#include "tl_counters.h"

void
tl_counters_add(struct tl_counters *dst, const struct tl_counters *src)
{
	/* The struct is all uint64_t: sum it as an array so a new counter cannot be
	 * forgotten here. */
	uint64_t *d = (uint64_t *)dst;
	const uint64_t *s = (const uint64_t *)src;

	_Static_assert(sizeof(struct tl_counters) % sizeof(uint64_t) == 0, "counters are u64");
	for (size_t i = 0; i < offsetof(struct tl_counters, reason) / sizeof(uint64_t) + TL_REASON_MAX;
			i++)
		d[i] += __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

int
tl_counters_print_figures(FILE *out, const struct tl_counters *c)
{
	fprintf(out, "figure events_valid %" PRIu64 "\n", c->events_valid);
	fprintf(out, "figure events_rejected %" PRIu64 "\n", c->events_rejected);
	fprintf(out, "figure error_events %" PRIu64 "\n", c->events_error);
	fprintf(out, "figure events_matched %" PRIu64 "\n", c->events_matched);
	fprintf(out, "figure frames %" PRIu64 "\n", c->rx_frames);
	fprintf(out, "figure bytes %" PRIu64 "\n", c->rx_bytes);
	fprintf(out, "figure datagrams %" PRIu64 "\n", c->udp_datagrams);
	fprintf(out, "figure reassembled %" PRIu64 "\n", c->reassembled);
	fprintf(out, "figure event_bytes %" PRIu64 "\n", c->event_bytes);
	fprintf(out, "figure rx_nombuf %" PRIu64 "\n", c->rx_nombuf);
	fprintf(out, "figure rx_missed %" PRIu64 "\n", c->rx_missed);
	for (int r = 1; r < TL_REASON_MAX; r++) {
		if (tl_reason_is_ignored((enum tl_reason)r))
			fprintf(out, "figure %s %" PRIu64 "\n", tl_reason_name((enum tl_reason)r),
					c->reason[r]);
		else
			fprintf(out, "figure rejected_%s %" PRIu64 "\n",
					tl_reason_name((enum tl_reason)r), c->reason[r]);
	}
	return ferror(out) ? -EIO : 0;
}
