/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec — block payload compression.
 *
 * The one module that includes <lz4.h>. A block is sent either raw or lz4
 * compressed; the encoder picks lz4 only when it saves at least
 * CODEC_MIN_SAVING_BYTES(len), because decompressing a block that barely shrank
 * costs the receiver more than the link saves. Zero blocks never get here: the
 * scan recognises them (delta_is_zero) and sends a marker instead.
 *
 * It knows nothing of frames, blocks or hashes: buffers in, buffers out. No
 * allocation (lz4's state lives on the stack), no I/O, callable from any thread.
 * Compressed input is untrusted: every malformed, truncated or oversized input is
 * -EBADMSG, never an assert.
 */
#ifndef PVREPL_CODEC_H
#define PVREPL_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* On the wire: keep the values; new kinds get new numbers. */
enum codec_kind {
	CODEC_RAW = 0,
	CODEC_LZ4 = 1,
};

/* Largest input codec_compress accepts and largest output codec_decompress makes. */
#define CODEC_LEN_MAX (1u << 30)
/* lz4 is kept only if it saves at least this many bytes (1/16 of len, at least 1). */
#define CODEC_MIN_SAVING_BYTES(len) ((len) / 16u > 0 ? (len) / 16u : 1u)

/*
 * Capacity dst needs for codec_compress of len bytes. The encoder never expands:
 * output that would not save CODEC_MIN_SAVING_BYTES is sent raw, so this is len.
 */
size_t codec_bound(size_t len);

/*
 * Compresses len bytes of src into dst (dst_cap >= codec_bound(len), no overlap)
 * and stores the kind chosen in *kind. Returns the number of bytes written to dst
 * (0 only when len is 0). len <= CODEC_LEN_MAX.
 */
int codec_compress(const void *src, size_t len, void *dst, size_t dst_cap, enum codec_kind *kind);

/*
 * Decodes src_len bytes of the given kind into dst. Returns 0 only when exactly
 * dst_len bytes come out; -EBADMSG for an unknown kind, a raw payload whose
 * length is not dst_len, a corrupt or truncated lz4 stream, or one that would
 * decode to more or fewer than dst_len bytes. dst is garbage after an error.
 */
int codec_decompress(enum codec_kind kind, const void *src, size_t src_len, void *dst,
		     size_t dst_len);

#endif
