/* SPDX-License-Identifier: Apache-2.0 */
/*
 * delta — block hashing and zero-block recognition (see delta.h).
 *
 * The only file that includes <xxhash.h>. XXH_STATIC_LINKING_ONLY exposes the
 * layout of XXH3_state_t so the streaming state can live in caller memory instead
 * of being malloc'ed by XXH3_createState(). It knows nothing of what is hashed.
 */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <string.h>

#include "delta.h"
#include "pvrepl_assert.h"

_Static_assert(sizeof(XXH3_state_t) <= DELTA_STREAM_STATE_BYTES,
	       "DELTA_STREAM_STATE_BYTES too small for this xxhash");
_Static_assert(_Alignof(XXH3_state_t) <= 64, "XXH3_state_t alignment above 64");

uint64_t delta_hash(const void *buf, size_t len)
{
	ASSERT(buf != NULL || len == 0);
	return XXH3_64bits(buf, len);
}

uint64_t delta_hash_seeded(const void *buf, size_t len, uint64_t seed)
{
	ASSERT(buf != NULL || len == 0);
	return XXH3_64bits_withSeed(buf, len, seed);
}

/*
 * Zero test: OR 64 bytes at a time into one word and stop at the first chunk that
 * is not zero. The fixed-size inner loop vectorises; most non-zero blocks are
 * rejected in the first chunk, and the zero case runs at memory bandwidth.
 */
#define DELTA_ZERO_CHUNK_BYTES 64u

bool delta_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t off = 0;

	ASSERT(buf != NULL || len == 0);
	while (len - off >= DELTA_ZERO_CHUNK_BYTES) {
		uint64_t words[DELTA_ZERO_CHUNK_BYTES / sizeof(uint64_t)];
		uint64_t acc = 0;

		/* memcpy: buf need not be 8-byte aligned; it compiles to loads */
		memcpy(words, p + off, sizeof(words));
		for (size_t i = 0; i < ARRAY_SIZE(words); i++)
			acc |= words[i];
		if (acc != 0)
			return false;
		off += DELTA_ZERO_CHUNK_BYTES;
	}
	for (; off < len; off++) {
		if (p[off] != 0)
			return false;
	}
	return true;
}

static XXH3_state_t *delta_stream_state(struct delta_stream *s)
{
	return (XXH3_state_t *)(void *)s->opaque;
}

void delta_stream_init(struct delta_stream *s, uint64_t seed)
{
	XXH_errorcode rc;

	ASSERT(s != NULL);
	memset(s, 0, sizeof(*s));
	rc = XXH3_64bits_reset_withSeed(delta_stream_state(s), seed);
	ASSERT(rc == XXH_OK);
}

void delta_stream_update(struct delta_stream *s, const void *buf, size_t len)
{
	XXH_errorcode rc;

	ASSERT(s != NULL);
	ASSERT(buf != NULL || len == 0);
	if (len == 0)
		return;
	rc = XXH3_64bits_update(delta_stream_state(s), buf, len);
	ASSERT(rc == XXH_OK);
}

uint64_t delta_stream_digest(const struct delta_stream *s)
{
	ASSERT(s != NULL);
	return XXH3_64bits_digest((const XXH3_state_t *)(const void *)s->opaque);
}
