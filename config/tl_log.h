/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Logging to stderr with levels and per-call-site rate limiting.
 *
 * Not for the hot path except through TL_LOG_RATELIMITED, which costs one branch and
 * one relaxed atomic when suppressed. Thread-safe: one fprintf per message.
 */
#ifndef TL_LOG_H
#define TL_LOG_H

#include <stdint.h>

enum tl_log_level { TL_LOG_ERR, TL_LOG_WARN, TL_LOG_INFO, TL_LOG_DEBUG };

/** Set the most verbose level printed (default TL_LOG_INFO). */
void tl_log_set_level(enum tl_log_level lvl);

/** Print one message (a newline is appended). */
void tl_log(enum tl_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** State for one rate-limited call site: at most @c burst messages per second. */
struct tl_log_rl {
	uint64_t window_start_s;
	uint32_t printed;
	uint32_t suppressed;
};

/** Return 1 if a message from this call site may be printed now, 0 if suppressed. */
int tl_log_rl_allow(struct tl_log_rl *rl, uint32_t burst);

#define TL_LOG_RATELIMITED(lvl, burst, ...)                                                   \
	do {                                                                                  \
		static struct tl_log_rl tl_rl_;                                               \
		if (tl_log_rl_allow(&tl_rl_, (burst)))                                        \
			tl_log((lvl), __VA_ARGS__);                                           \
	} while (0)

#define TL_ERR(...) tl_log(TL_LOG_ERR, __VA_ARGS__)
#define TL_WARN(...) tl_log(TL_LOG_WARN, __VA_ARGS__)
#define TL_INFO(...) tl_log(TL_LOG_INFO, __VA_ARGS__)
#define TL_DEBUG(...) tl_log(TL_LOG_DEBUG, __VA_ARGS__)

#endif
