/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "tl_log.h"

static enum tl_log_level max_level = TL_LOG_INFO;

static const char *const level_name[] = {"error", "warning", "info", "debug"};

void
tl_log_set_level(enum tl_log_level lvl)
{
	max_level = lvl;
}

void
tl_log(enum tl_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (lvl > max_level)
		return;
	n = snprintf(line, sizeof(line), "tapline: %s: ", level_name[lvl]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One call keeps lines from different threads whole. */
	fprintf(stderr, "%s\n", line);
}

int
tl_log_rl_allow(struct tl_log_rl *rl, uint32_t burst)
{
	struct timespec ts;
	uint64_t now;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (uint64_t)ts.tv_sec;
	if (now != __atomic_load_n(&rl->window_start_s, __ATOMIC_RELAXED)) {
		uint32_t sup = __atomic_exchange_n(&rl->suppressed, 0, __ATOMIC_RELAXED);

		__atomic_store_n(&rl->window_start_s, now, __ATOMIC_RELAXED);
		__atomic_store_n(&rl->printed, 0, __ATOMIC_RELAXED);
		if (sup)
			tl_log(TL_LOG_WARN, "(%u similar messages suppressed)", sup);
	}
	if (__atomic_fetch_add(&rl->printed, 1, __ATOMIC_RELAXED) < burst)
		return 1;
	__atomic_fetch_add(&rl->suppressed, 1, __ATOMIC_RELAXED);
	return 0;
}
