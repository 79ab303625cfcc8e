/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * tapline's single error space.
 *
 * Every function that can fail returns an int: 0 on success, a negative errno value
 * (-ENOMEM, -EINVAL, ...) for system-level failures, or a negative project code from
 * the reserved range [TL_E_FIRST, TL_E_LAST] below. Foreign error spaces (hs_error_t,
 * MDB_*, rte_errno, libyaml) are translated at the module boundary.
 *
 * Functions that classify input (decode, extract) do not fail: they return a verdict,
 * an enum tl_reason from pipeline/tl_reason.h where 0 (TL_REASON_OK) means accepted.
 */
#ifndef TL_ERROR_H
#define TL_ERROR_H

/* Project codes live far below any errno value. */
#define TL_E_FIRST (-30000)

enum tl_error {
	TL_E_CONFIG = TL_E_FIRST,   /**< configuration is invalid (details were reported) */
	TL_E_YAML,                  /**< YAML syntax error */
	TL_E_UNKNOWN_KEY,           /**< configuration key not in any option table */
	TL_E_BAD_VALUE,             /**< configuration value has the wrong type or range */
	TL_E_EXTENDS,               /**< profile inheritance failed (missing, cycle, depth) */
	TL_E_SCHEMA,                /**< event schema (columns/paths) is inconsistent */
	TL_E_DPDK,                  /**< DPDK EAL or ethdev failure (rte_errno logged) */
	TL_E_NOHUGE,                /**< hugepages requested but none reserved */
	TL_E_NODEV,                 /**< capture device missing */
	TL_E_PCAP,                  /**< capture file unreadable or malformed */
	TL_E_DATA,                  /**< generator input data missing or unusable */
	TL_E_SPOOL,                 /**< LMDB spool failure (details logged) */
	TL_E_SPOOL_CORRUPT,         /**< LMDB spool environment damaged: move it aside */
	TL_E_LAST,
};

/**
 * Describe an error code.
 * @param err a value returned by a tapline function (0, -errno or a TL_E_* code).
 * @return a static string; never NULL. Thread-safe.
 */
const char *tl_strerror(int err);

#endif
