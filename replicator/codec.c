/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec — block payload compression (see codec.h).
 *
 * The only file that includes <lz4.h>. lz4 is asked to compress into at most
 * len - CODEC_MIN_SAVING_BYTES(len) bytes: if it cannot, it stops early and
 * returns 0, and the block goes raw. That makes the bound equal to len, so
 * callers size buffers by block size and no scratch buffer is needed.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <lz4.h>

#include "codec.h"
#include "pvrepl_assert.h"

_Static_assert(CODEC_LEN_MAX <= LZ4_MAX_INPUT_SIZE, "CODEC_LEN_MAX beyond lz4's limit");
_Static_assert(CODEC_LEN_MAX <= INT_MAX, "codec returns byte counts as int");

size_t codec_bound(size_t len)
{
	ASSERT(len <= CODEC_LEN_MAX);
	return len;
}

int codec_compress(const void *src, size_t len, void *dst, size_t dst_cap, enum codec_kind *kind)
{
	size_t lz4_cap;
	int n;

	ASSERT(src != NULL || len == 0);
	ASSERT(dst != NULL || len == 0);
	ASSERT(kind != NULL);
	ASSERT(len <= CODEC_LEN_MAX);
	ASSERT(dst_cap >= codec_bound(len));

	if (len <= CODEC_MIN_SAVING_BYTES(len))
		goto raw;
	lz4_cap = len - CODEC_MIN_SAVING_BYTES(len);
	n = LZ4_compress_default(src, dst, (int)len, (int)lz4_cap);
	if (n <= 0)
		goto raw;
	ASSERT((size_t)n <= lz4_cap);
	*kind = CODEC_LZ4;
	return n;
raw:
	if (len > 0)
		memcpy(dst, src, len);
	*kind = CODEC_RAW;
	return (int)len;
}

int codec_decompress(enum codec_kind kind, const void *src, size_t src_len, void *dst,
		     size_t dst_len)
{
	int n;

	ASSERT(src != NULL || src_len == 0);
	ASSERT(dst != NULL || dst_len == 0);

	switch (kind) {
	case CODEC_RAW:
		if (src_len != dst_len)
			return -EBADMSG;
		if (dst_len > 0)
			memcpy(dst, src, dst_len);
		return 0;
	case CODEC_LZ4:
		/* both lengths come from the wire: bound them before narrowing to int */
		if (src_len == 0 || src_len > CODEC_LEN_MAX || dst_len > CODEC_LEN_MAX)
			return -EBADMSG;
		/* LZ4_decompress_safe never writes past dst_len and never reads past
		 * src_len; it fails if the stream needs more room than dst_len */
		n = LZ4_decompress_safe(src, dst, (int)src_len, (int)dst_len);
		if (n < 0 || (size_t)n != dst_len)
			return -EBADMSG;
		return 0;
	}
	return -EBADMSG;
}
