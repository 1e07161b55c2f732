/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ASSERT() stays on in release builds (redis's serverAssert): a broken invariant
 * stops the process with file and line rather than corrupting a standby. Use it for
 * preconditions and invariants of our own code only; bytes from the network or
 * from disk are checked with ordinary errors (-EBADMSG), never with ASSERT.
 */
#ifndef PVREPL_ASSERT_H
#define PVREPL_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define ASSERT(cond)                                                                               \
	do {                                                                                       \
		if (__builtin_expect(!(cond), 0)) {                                                \
			fprintf(stderr, "pvrepl: assertion failed: %s (%s:%d)\n", #cond, __FILE__, \
				__LINE__);                                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
