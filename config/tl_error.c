/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "tl_error.h"

static const char *const tl_error_text[] = {
	[TL_E_CONFIG - TL_E_FIRST] = "invalid configuration",
	[TL_E_YAML - TL_E_FIRST] = "YAML syntax error",
	[TL_E_UNKNOWN_KEY - TL_E_FIRST] = "unknown configuration key",
	[TL_E_BAD_VALUE - TL_E_FIRST] = "bad configuration value",
	[TL_E_EXTENDS - TL_E_FIRST] = "profile inheritance failed",
	[TL_E_SCHEMA - TL_E_FIRST] = "inconsistent event schema",
	[TL_E_DPDK - TL_E_FIRST] = "DPDK failure",
	[TL_E_NOHUGE - TL_E_FIRST] = "no hugepages reserved",
	[TL_E_NODEV - TL_E_FIRST] = "capture device not found",
	[TL_E_PCAP - TL_E_FIRST] = "capture file unreadable",
	[TL_E_DATA - TL_E_FIRST] = "generator data missing",
	[TL_E_SPOOL - TL_E_FIRST] = "spool (LMDB) failure",
	[TL_E_SPOOL_CORRUPT - TL_E_FIRST] = "spool environment damaged",
};

const char *
tl_strerror(int err)
{
	if (err == 0)
		return "success";
	if (err >= TL_E_FIRST && err < TL_E_LAST)
		return tl_error_text[err - TL_E_FIRST];
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}
