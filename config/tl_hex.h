/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * One hex digit's value: shared by the option parser, URL percent-decoding and the keys
 * file reader (header-only, so the standalone producer library needs no config module).
 */
#ifndef TL_HEX_H
#define TL_HEX_H

/** @return 0..15 for [0-9a-fA-F], else -1. */
static inline int
tl_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
