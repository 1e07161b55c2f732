/* SPDX-License-Identifier: Apache-2.0 */
/*
 * delta — block hashing and zero-block recognition.
 *
 * The one module that includes <xxhash.h>: every hash pvrepl computes (block
 * hashes, Merkle nodes, checksums of on-disk records) goes through here, so the
 * hash function is chosen in one place. Hashes are XXH3-64: fast and well
 * distributed, not cryptographic; integrity against an attacker is TLS's job.
 *
 * It knows nothing of maps, block sizes, devices or files: buffers in, numbers
 * out, no allocation, no I/O.
 */
#ifndef PVREPL_DELTA_H
#define PVREPL_DELTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* XXH3-64 of len bytes (seed 0). buf may be NULL only when len is 0. */
uint64_t delta_hash(const void *buf, size_t len);
/* XXH3-64 with a seed: used to separate domains (leaf vs node vs record). */
uint64_t delta_hash_seeded(const void *buf, size_t len, uint64_t seed);
/* True when all len bytes are zero (true for len 0). */
bool delta_is_zero(const void *buf, size_t len);

/*
 * Streaming XXH3-64 for data that arrives in pieces (file checksums written in
 * chunks). Feeding the same bytes in any split gives the same digest as
 * delta_hash_seeded() over the whole. The state is opaque storage embedded by the
 * caller (no allocation); its size is checked against xxhash's in delta.c.
 */
#define DELTA_STREAM_STATE_BYTES 640u
struct delta_stream {
	_Alignas(64) unsigned char opaque[DELTA_STREAM_STATE_BYTES];
};

void delta_stream_init(struct delta_stream *s, uint64_t seed);
void delta_stream_update(struct delta_stream *s, const void *buf, size_t len);
uint64_t delta_stream_digest(const struct delta_stream *s);

#endif
