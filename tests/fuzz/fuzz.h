/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The input layouts of the fuzz targets, shared by the targets and by
 * corpus-gen.c, which writes their seeds from the real encoders (`make fuzz`
 * runs it before the fuzzers; no binary seed is committed).
 *
 * fuzz_proto: byte 0 is the mode. Below FUZZ_PROTO_MODE_PAYLOAD the rest is a
 * stream of frames; from it on, the rest is the payload of the message type
 * mode % FUZZ_PROTO_TYPES (1..PROTO_TYPE_MAX, and unknown ones).
 */
#ifndef PVREPL_FUZZ_H
#define PVREPL_FUZZ_H

#include "proto.h"

#define FUZZ_PROTO_MODE_PAYLOAD 0x20u
#define FUZZ_PROTO_TYPES	(PROTO_TYPE_MAX + 2u)

/* The smallest payload-mode byte for type (what corpus-gen writes). */
static inline unsigned char fuzz_proto_mode_of(unsigned type)
{
	unsigned m = FUZZ_PROTO_MODE_PAYLOAD;

	while (m % FUZZ_PROTO_TYPES != type)
		m++;
	return (unsigned char)m;
}

#endif
