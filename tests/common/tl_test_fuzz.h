/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Invariant check for libFuzzer targets.
 *
 * A fuzz target has no test framework: a broken invariant must crash, so that libFuzzer
 * stops, keeps the input as a crash artifact and reports it. The message names the file,
 * line and the condition that failed.
 */
#ifndef TL_TEST_FUZZ_H
#define TL_TEST_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

/** Abort (after a message on stderr) unless @p cond holds. Evaluates @p cond once. */
#define TL_FUZZ_CHECK(cond)                                                                        \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,       \
			        #cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif /* TL_TEST_FUZZ_H */
