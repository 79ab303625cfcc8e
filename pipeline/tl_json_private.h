/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Test hooks of the JSON extractor. Not for product code.
 */
#ifndef TL_JSON_PRIVATE_H
#define TL_JSON_PRIVATE_H

/**
 * Choose the string scanner: @p on != 0 forces the scalar one, 0 goes back to AVX2 if
 * the CPU has it. The environment variable TAPLINE_JSON_SCALAR=1 does the same at
 * start-up. Not thread-safe: call it while no extraction is running.
 */
void tl_json_force_scalar(int on);

#endif
