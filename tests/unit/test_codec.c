// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of codec: round trips of random, zero, text-like and half-random
 * data over many sizes (1 byte .. 1 MiB, powers of two and odd sizes); the choice
 * of raw for incompressible data and of lz4 only when it saves
 * CODEC_MIN_SAVING_BYTES; and the decoder's refusal (-EBADMSG, never a crash) of
 * unknown kinds, raw payloads of the wrong length, truncated, bit-flipped and
 * garbage lz4 streams, and streams that decode to more or fewer bytes than asked.
 * Runs in the sanitizer build too, which would catch any read or write out of
 * bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "pvrepl_assert.h"
#include "testutil.h"

enum fill_kind { FILL_RANDOM, FILL_ZERO, FILL_TEXT, FILL_HALF };

static const char *const fill_names[] = { "random", "zero", "text", "half-random" };

static void fill(unsigned char *buf, size_t len, enum fill_kind kind, uint64_t *rng)
{
	static const char *const words[] = { "block ",	 "epoch ",   "the ", "volume ",
					     "replica ", "journal ", "a ",   "standby\n" };

	switch (kind) {
	case FILL_RANDOM:
		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)tu_rand_next(rng);
		break;
	case FILL_ZERO:
		memset(buf, 0, len);
		break;
	case FILL_TEXT:
		for (size_t i = 0; i < len;) {
			const char *w = words[tu_rand_below(rng, ARRAY_SIZE(words))];

			for (; *w != 0 && i < len; w++)
				buf[i++] = (unsigned char)*w;
		}
		break;
	case FILL_HALF:
		for (size_t i = 0; i < len; i++)
			buf[i] = i < len / 2 ? (unsigned char)tu_rand_next(rng) : 'x';
		break;
	}
}

/* Sizes around block sizes, tiny ones and odd ones. */
static const size_t sizes[] = { 1,    2,     15,    16,	   17,	   100,	   255,
				511,  512,   513,   1000,  4095,   4096,   4097,
				8192, 65535, 65536, 65537, 131072, 262144, 1 << 20 };

static void test_round_trips(void **state)
{
	size_t max = 1 << 20;
	unsigned char *src = malloc(max), *enc = malloc(max), *dec = malloc(max);
	uint64_t rng = 0x5eed;

	(void)state;
	assert_non_null(src);
	assert_non_null(enc);
	assert_non_null(dec);
	for (size_t k = 0; k <= FILL_HALF; k++) {
		for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
			size_t len = sizes[s];
			enum codec_kind kind;
			int n;

			fill(src, len, (enum fill_kind)k, &rng);
			assert_true(codec_bound(len) <= max);
			n = codec_compress(src, len, enc, codec_bound(len), &kind);
			assert_true(n > 0);
			assert_true((size_t)n <= len);
			if (kind == CODEC_LZ4)
				assert_true((size_t)n <= len - CODEC_MIN_SAVING_BYTES(len));
			else
				assert_int_equal(n, (int)len);
			memset(dec, 0xa5, len);
			if (codec_decompress(kind, enc, (size_t)n, dec, len) != 0)
				fail_msg("%s %zu bytes: decode failed", fill_names[k], len);
			if (memcmp(src, dec, len) != 0)
				fail_msg("%s %zu bytes: round trip differs", fill_names[k], len);
			/* compressible data of a useful size must actually compress */
			if (len >= 512 && (k == FILL_ZERO || k == FILL_TEXT || k == FILL_HALF))
				assert_int_equal(kind, CODEC_LZ4);
		}
	}
	free(src);
	free(enc);
	free(dec);
}

static void test_empty(void **state)
{
	unsigned char src[1] = { 0 }, dst[1];
	enum codec_kind kind = CODEC_LZ4;

	(void)state;
	assert_int_equal(codec_bound(0), 0);
	assert_int_equal(codec_compress(src, 0, dst, 0, &kind), 0);
	assert_int_equal(kind, CODEC_RAW);
	assert_int_equal(codec_decompress(CODEC_RAW, src, 0, dst, 0), 0);
	assert_int_equal(codec_decompress(CODEC_RAW, src, 1, dst, 0), -EBADMSG);
	assert_int_equal(codec_decompress(CODEC_LZ4, src, 0, dst, 0), -EBADMSG);
}

static void test_incompressible_is_raw(void **state)
{
	unsigned char src[4096], enc[4096];
	enum codec_kind kind;
	uint64_t rng = 7;

	(void)state;
	fill(src, sizeof(src), FILL_RANDOM, &rng);
	assert_int_equal(codec_compress(src, sizeof(src), enc, sizeof(enc), &kind), 4096);
	assert_int_equal(kind, CODEC_RAW);
	assert_memory_equal(src, enc, sizeof(src));
}

/*
 * Data that lz4 shrinks, but by less than the threshold, must go raw: random
 * bytes with a repeated tail of 1/32 of the block save about 1/32 < 1/16.
 */
static void test_small_saving_is_raw(void **state)
{
	unsigned char src[8192], enc[8192];
	enum codec_kind kind;
	uint64_t rng = 11;
	int n;

	(void)state;
	fill(src, sizeof(src), FILL_RANDOM, &rng);
	memset(src + sizeof(src) - sizeof(src) / 32, 'z', sizeof(src) / 32);
	n = codec_compress(src, sizeof(src), enc, sizeof(enc), &kind);
	assert_int_equal(kind, CODEC_RAW);
	assert_int_equal(n, (int)sizeof(src));
	/* and with a repeated tail of 1/8 it saves enough */
	memset(src + sizeof(src) - sizeof(src) / 8, 'z', sizeof(src) / 8);
	n = codec_compress(src, sizeof(src), enc, sizeof(enc), &kind);
	assert_int_equal(kind, CODEC_LZ4);
	assert_true((size_t)n <= sizeof(src) - CODEC_MIN_SAVING_BYTES(sizeof(src)));
}

static void test_raw_length_mismatch(void **state)
{
	unsigned char src[64] = { 1 }, dst[64];

	(void)state;
	assert_int_equal(codec_decompress(CODEC_RAW, src, 63, dst, 64), -EBADMSG);
	assert_int_equal(codec_decompress(CODEC_RAW, src, 64, dst, 63), -EBADMSG);
	assert_int_equal(codec_decompress(CODEC_RAW, src, 64, dst, 64), 0);
}

static void test_unknown_kind(void **state)
{
	unsigned char src[64] = { 0 }, dst[64];

	(void)state;
	assert_int_equal(codec_decompress((enum codec_kind)2, src, 64, dst, 64), -EBADMSG);
	assert_int_equal(codec_decompress((enum codec_kind) - 1, src, 64, dst, 64), -EBADMSG);
	assert_int_equal(codec_decompress((enum codec_kind)0x7fffffff, src, 64, dst, 64), -EBADMSG);
}

/* A compressed text block, for the corruption tests. */
static int compress_text(unsigned char *src, unsigned char *enc, size_t len)
{
	enum codec_kind kind;
	uint64_t rng = 3;
	int n;

	fill(src, len, FILL_TEXT, &rng);
	n = codec_compress(src, len, enc, len, &kind);
	assert_int_equal(kind, CODEC_LZ4);
	return n;
}

static void test_dst_len_mismatch(void **state)
{
	size_t len = 4096;
	unsigned char src[4096], enc[4096], dst[8192];
	int n;

	(void)state;
	n = compress_text(src, enc, len);
	assert_int_equal(codec_decompress(CODEC_LZ4, enc, (size_t)n, dst, len), 0);
	/* the stream holds 4096 bytes: asking for fewer or more is an error */
	assert_int_equal(codec_decompress(CODEC_LZ4, enc, (size_t)n, dst, len - 1), -EBADMSG);
	assert_int_equal(codec_decompress(CODEC_LZ4, enc, (size_t)n, dst, len + 1), -EBADMSG);
	assert_int_equal(codec_decompress(CODEC_LZ4, enc, (size_t)n, dst, 2 * len), -EBADMSG);
	assert_int_equal(codec_decompress(CODEC_LZ4, enc, (size_t)n, dst, 0), -EBADMSG);
	/* absurd lengths from a frame header are refused before lz4 sees them */
	assert_int_equal(
		codec_decompress(CODEC_LZ4, enc, (size_t)n, dst, (size_t)CODEC_LEN_MAX + 1),
		-EBADMSG);
	assert_int_equal(codec_decompress(CODEC_LZ4, enc, (size_t)CODEC_LEN_MAX + 1, dst, len),
			 -EBADMSG);
}

static void test_truncated(void **state)
{
	size_t len = 4096;
	unsigned char src[4096], enc[4096], dst[4096];
	int n;

	(void)state;
	n = compress_text(src, enc, len);
	for (int cut = 0; cut < n; cut++) {
		/* a copy of exactly cut bytes, so ASan sees any read past the end */
		unsigned char *t = malloc((size_t)cut + 1);

		assert_non_null(t);
		memcpy(t, enc, (size_t)cut);
		if (codec_decompress(CODEC_LZ4, t, (size_t)cut, dst, len) != -EBADMSG)
			fail_msg("stream cut to %d of %d bytes was accepted", cut, n);
		free(t);
	}
}

/*
 * Flipping bits may by chance give another valid stream of exactly len bytes; a
 * decoder cannot know. What it must do is never crash and never return 0 with a
 * wrong length: every result is 0 or -EBADMSG, and most flips are caught.
 */
static void test_corrupted(void **state)
{
	size_t len = 4096;
	unsigned char src[4096], enc[4096], bad[4096], dst[4096];
	int n, rejected = 0, trials = 0;
	uint64_t rng = 99;

	(void)state;
	n = compress_text(src, enc, len);
	for (int i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			int rc;

			memcpy(bad, enc, (size_t)n);
			bad[i] ^= (unsigned char)(1u << bit);
			rc = codec_decompress(CODEC_LZ4, bad, (size_t)n, dst, len);
			assert_true(rc == 0 || rc == -EBADMSG);
			rejected += rc == -EBADMSG;
			trials++;
		}
	}
	/* garbage of every small length */
	for (size_t glen = 1; glen < 300; glen++) {
		int rc;

		fill(bad, glen, FILL_RANDOM, &rng);
		rc = codec_decompress(CODEC_LZ4, bad, glen, dst, len);
		assert_true(rc == 0 || rc == -EBADMSG);
		rejected += rc == -EBADMSG;
		trials++;
	}
	print_message("corruption: %d of %d inputs rejected\n", rejected, trials);
	assert_true(rejected > trials / 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_incompressible_is_raw),
		cmocka_unit_test(test_small_saving_is_raw),
		cmocka_unit_test(test_raw_length_mismatch),
		cmocka_unit_test(test_unknown_kind),
		cmocka_unit_test(test_dst_len_mismatch),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_corrupted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
