/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The two clocks tapline reads, in nanoseconds: monotonic (intervals, timeouts, ages)
 * and real time (event and ingestion times, written into rows).
 */
#ifndef TL_TIME_H
#define TL_TIME_H

#include <stdint.h>
#include <time.h>

/** CLOCK_MONOTONIC in ns. */
static inline uint64_t
tl_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/** CLOCK_REALTIME in ns since the epoch. */
static inline int64_t
tl_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

#endif
