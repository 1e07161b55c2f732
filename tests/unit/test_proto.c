// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of proto, the wire format: round trips of every message type (random
 * valid messages, decoded field for field and re-encoded byte for byte); the
 * layout at the offsets docs/PROTOCOL.md gives; every truncation of every frame
 * and payload refused (-EAGAIN for an incomplete frame, -EBADMSG for a short
 * payload); every header bit flip refused; header fields out of range with valid
 * checksums (forged); oversized lengths, run length against hash count, unknown
 * codecs and types, empty and unterminated names, bad messages; encoders refusing
 * what decoders refuse (-EINVAL) and never writing past cap (-ENOSPC, checked by
 * ASan in `make check`); and a seeded loop of random and mutated bytes through
 * every decoder, where anything accepted must re-encode to the same bytes.
 *
 * Random tests are seeded: the seed is printed, and PVREPL_TEST_SEED=<n> replays
 * a run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "delta.h"
#include "proto.h"
#include "pvrepl_assert.h"
#include "scan.h"
#include "testutil.h"

/* What the scan produces must fit what the protocol carries. */
_Static_assert(SCAN_BATCH_BYTES_MAX <= PROTO_DATA_PLAINTEXT_MAX, "a scan batch fits DATA");
_Static_assert(SCAN_BLOCK_BYTES_MAX <= PROTO_BLOCK_BYTES_MAX, "scan block sizes are sendable");
_Static_assert(SCAN_BLOCK_BYTES_MIN >= PROTO_BLOCK_BYTES_MIN, "scan block sizes are sendable");
_Static_assert(SCAN_BATCH_BYTES_MAX / SCAN_BLOCK_BYTES_MIN <= PROTO_DATA_BLOCKS_MAX,
	       "a scan batch's blocks fit DATA");
_Static_assert(MAP_DISK_VOLUME_ID_BYTES == PROTO_VOLUME_ID_BYTES, "volume id size");
_Static_assert(MAP_DISK_VOLUME_NAME_BYTES == PROTO_VOLUME_NAME_BYTES, "volume name size");

#define RANDOM_ITERATIONS 200000
#define SAMPLES_PER_TYPE  24

static uint64_t test_seed;
/* Size of the DATA runs encode_sample makes: up to 64 blocks of 512..4096 bytes
 * (256 KiB), or smaller for the random loop. */
static uint32_t sample_blocks_max = 64;
static uint32_t sample_shift_max = 3;

/* Small runs (<= 8 blocks of <= 1 KiB) for tests that cost O(frame^2) or loop long. */
static void sample_small(bool small)
{
	sample_blocks_max = small ? 8 : 64;
	sample_shift_max = small ? 1 : 3;
}

/* Frames up to the largest; static so the stack stays small. */
static uint8_t frame[PROTO_FRAME_BYTES_MAX];
static uint8_t out[PROTO_FRAME_BYTES_MAX];
static uint8_t data_src[PROTO_DATA_PLAINTEXT_MAX];
static uint64_t hashes_src[PROTO_DATA_BLOCKS_MAX];
static uint64_t hashes_tmp[PROTO_DATA_BLOCKS_MAX];

static const uint16_t all_types[] = {
	PROTO_HELLO,	 PROTO_WELCOME, PROTO_REFUSE,	 PROTO_EPOCH_BEGIN,
	PROTO_DATA,	 PROTO_ZERO,	PROTO_EPOCH_END, PROTO_EPOCH_ACK,
	PROTO_KEEPALIVE, PROTO_ERROR,	PROTO_PAGES,	 PROTO_ROUND,
};
static uint32_t pages_idx_src[PROTO_PAGES_MAX];
static uint32_t pages_idx_tmp[PROTO_PAGES_MAX];

/* ------------------------------------------------------------- helpers */

static void st16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static void st32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void st64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static uint16_t ld16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static uint32_t ld32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t ld64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static uint64_t rnd(uint64_t *rng)
{
	return tu_rand_next(rng);
}

static uint64_t below(uint64_t *rng, uint64_t bound)
{
	return tu_rand_below(rng, bound);
}

/*
 * Writes a header with valid checksums in front of the n payload bytes already at
 * out + 32, claiming payload_bytes (normally n), so that a test reaches the checks
 * behind the checksums.
 */
static size_t forge_header(uint8_t *buf, uint32_t magic, uint16_t version, uint16_t type,
			   uint32_t flags, uint32_t payload_bytes, size_t n)
{
	st32(buf + 0, magic);
	st16(buf + 4, version);
	st16(buf + 6, type);
	st32(buf + 8, flags);
	st32(buf + 12, payload_bytes);
	st64(buf + 16, delta_hash_seeded(buf + PROTO_HEADER_BYTES, n, PROTO_SEED_PAYLOAD));
	st64(buf + 24, delta_hash_seeded(buf, 24, PROTO_SEED_HEADER));
	return PROTO_HEADER_BYTES + n;
}

/* A well-signed frame of type around payload (which may already be at buf + 32). */
static size_t forge(uint8_t *buf, uint16_t type, const uint8_t *payload, size_t n)
{
	ASSERT(n <= PROTO_FRAME_PAYLOAD_MAX);
	if (payload != buf + PROTO_HEADER_BYTES)
		memmove(buf + PROTO_HEADER_BYTES, payload, n);
	return forge_header(buf, PROTO_MAGIC, PROTO_VERSION_MAX, type, 0, (uint32_t)n, n);
}

static void random_name(char *name, uint64_t *rng)
{
	size_t n = 1 + below(rng, PROTO_VOLUME_NAME_BYTES - 1);

	memset(name, 0, PROTO_VOLUME_NAME_BYTES);
	for (size_t i = 0; i < n; i++)
		name[i] = (char)(0x20 + below(rng, 0x7f - 0x20));
}

static void random_message(char *msg, uint64_t *rng)
{
	size_t n = below(rng, PROTO_MESSAGE_BYTES_MAX + 1);

	memset(msg, 0, PROTO_MESSAGE_BYTES_MAX + 1);
	for (size_t i = 0; i < n; i++)
		msg[i] = (char)(0x20 + below(rng, 0x7f - 0x20));
}

/* A heap copy of exactly n bytes (at least 1 allocated, never read when n is 0). */
static uint8_t *exact_copy(const uint8_t *src, size_t n)
{
	uint8_t *b = malloc(n > 0 ? n : 1);

	assert_non_null(b);
	memcpy(b, src, n);
	return b;
}

/* --------------------------------------------------- random valid messages */

static void sample_hello(struct proto_hello *m, uint64_t *rng)
{
	uint64_t g = below(rng, 100), e = below(rng, 1000);

	memset(m, 0, sizeof(*m));
	m->version_min = (uint16_t)(1 + below(rng, 2));
	m->version_max = (uint16_t)(m->version_min + below(rng, 3));
	m->capabilities = rnd(rng);
	for (size_t i = 0; i < PROTO_VOLUME_ID_BYTES; i++)
		m->volume_id[i] = (uint8_t)rnd(rng);
	random_name(m->volume_name, rng);
	m->block_bytes = PROTO_BLOCK_BYTES_MIN << below(rng, 14);
	m->size_bytes = 1 + below(rng, (uint64_t)m->block_bytes * 100000);
	m->history_count = 1 + (uint32_t)below(rng, PROTO_HISTORY_MAX);
	for (uint32_t i = 0; i < m->history_count; i++) {
		m->history[i].generation = g;
		m->history[i].start_epoch = e;
		g += 1 + below(rng, 5);
		e += below(rng, 10);
	}
	m->generation = m->history[m->history_count - 1].generation;
	m->epoch = m->history[m->history_count - 1].start_epoch + below(rng, 100);
	m->merkle_root = rnd(rng);
}

static void sample_welcome(struct proto_welcome *m, uint64_t *rng)
{
	memset(m, 0, sizeof(*m));
	m->version_min = (uint16_t)(1 + below(rng, 2));
	m->version_max = (uint16_t)(m->version_min + below(rng, 3));
	m->version = (uint16_t)(m->version_min + below(rng, m->version_max - m->version_min + 1u));
	m->state = (uint8_t)below(rng, 3);
	m->capabilities = rnd(rng);
	m->generation = rnd(rng);
	m->merkle_root = rnd(rng);
	if (m->state != PROTO_STATE_EMPTY) {
		m->epoch = below(rng, 1000);
		if (below(rng, 2)) {
			m->resume_epoch = m->epoch + 1 + below(rng, 3);
			m->resume_block = below(rng, PROTO_BLOCK_COUNT_MAX + 1);
		}
	}
	for (size_t i = 0; i < PROTO_VOLUME_ID_BYTES; i++)
		m->volume_id[i] = (uint8_t)rnd(rng);
}

static void sample_refuse(struct proto_refuse *m, uint64_t *rng)
{
	memset(m, 0, sizeof(*m));
	m->reason = (uint16_t)(1 + below(rng, 0xffff));
	m->version_min = (uint16_t)(1 + below(rng, 3));
	m->version_max = (uint16_t)(m->version_min + below(rng, 3));
	random_message(m->message, rng);
}

static void sample_epoch_begin(struct proto_epoch_begin *m, uint64_t *rng)
{
	memset(m, 0, sizeof(*m));
	m->epoch = 1 + below(rng, 1000000);
	m->generation = rnd(rng);
	m->flags = (uint32_t)below(rng, PROTO_EPOCH_FLAGS_KNOWN + 1);
	if ((m->flags & PROTO_EPOCH_INITIAL_SYNC) == 0)
		m->base_epoch = below(rng, m->epoch);
	m->block_count = below(rng, PROTO_BLOCK_COUNT_MAX + 1);
	m->capture_unix_ms = rnd(rng);
	if (m->flags & PROTO_EPOCH_RESUMED)
		m->resume_block = 1 + below(rng, PROTO_BLOCK_COUNT_MAX);
}

/*
 * A run of 1..blocks_max blocks of 512 << 0..shift_max bytes; hashes from the
 * static source (overwritten by the next sample), data from data_src (filled once).
 */
static void sample_data(struct proto_data *m, uint64_t *rng, uint32_t blocks_max,
			uint32_t shift_max)
{
	uint32_t block_bytes = PROTO_BLOCK_BYTES_MIN << below(rng, shift_max + 1);

	memset(m, 0, sizeof(*m));
	m->block_count = 1 + (uint32_t)below(rng, blocks_max);
	while ((uint64_t)m->block_count * block_bytes > PROTO_DATA_PLAINTEXT_MAX)
		block_bytes /= 2;
	m->first_block = below(rng, PROTO_BLOCK_COUNT_MAX - m->block_count + 1);
	m->plaintext_bytes =
		(m->block_count - 1) * block_bytes + 1 + (uint32_t)below(rng, block_bytes);
	m->codec = (uint16_t)below(rng, 2);
	if (m->plaintext_bytes == 1)
		m->codec = PROTO_CODEC_RAW; /* lz4 must save a byte */
	m->data_bytes = m->codec == PROTO_CODEC_RAW
				? m->plaintext_bytes
				: 1 + (uint32_t)below(rng, m->plaintext_bytes - 1);
	for (uint32_t i = 0; i < m->block_count; i++)
		hashes_src[i] = rnd(rng);
	m->hashes = hashes_src;
	m->data = data_src;
}

/* 1..PROTO_PAGES_MAX pages at ascending random indexes, the last maybe short. */
static void sample_pages(struct proto_pages *m, uint64_t *rng)
{
	uint32_t idx = 0;

	memset(m, 0, sizeof(*m));
	/* as many pages as DATA samples blocks (the truncation tests cut every
	 * frame at every length), at most a block's worth */
	m->page_count =
		1 + (uint32_t)below(rng, sample_blocks_max < PROTO_PAGES_MAX ? sample_blocks_max
									     : PROTO_PAGES_MAX);
	for (uint32_t i = 0; i < m->page_count; i++) {
		uint32_t room = PROTO_PAGES_MAX - (m->page_count - i) - idx;

		idx += (uint32_t)below(rng, room / 4 + 1);
		pages_idx_src[i] = idx++;
		hashes_src[i] = rnd(rng);
	}
	m->block = below(rng, PROTO_BLOCK_COUNT_MAX);
	m->block_hash = rnd(rng);
	m->plaintext_bytes = (m->page_count - 1) * PROTO_PAGE_BYTES + PROTO_BLOCK_BYTES_MIN +
			     (uint32_t)below(rng, PROTO_PAGE_BYTES - PROTO_BLOCK_BYTES_MIN + 1);
	m->codec = (uint16_t)below(rng, 2);
	m->data_bytes = m->codec == PROTO_CODEC_RAW
				? m->plaintext_bytes
				: 1 + (uint32_t)below(rng, m->plaintext_bytes - 1);
	m->page_index = pages_idx_src;
	m->page_hashes = hashes_src;
	m->data = data_src;
}

static void sample_zero(struct proto_zero *m, uint64_t *rng)
{
	m->block_count = 1 + (uint32_t)below(rng, PROTO_ZERO_BLOCKS_MAX);
	m->first_block = below(rng, PROTO_BLOCK_COUNT_MAX - m->block_count + 1);
}

/* Rounds 2..PROTO_ROUNDS_MAX, final or not; a capture time only when final. */
static void sample_round(struct proto_round *m, uint64_t *rng)
{
	memset(m, 0, sizeof(*m));
	m->round = 2 + (uint32_t)below(rng, PROTO_ROUNDS_MAX - 1);
	if (below(rng, 2)) {
		uint32_t kind = (uint32_t)below(rng, 4); /* 0 unsaid, else 2..4 */

		m->flags = PROTO_ROUND_FINAL | (kind ? kind + 1 : 0) << PROTO_ROUND_CAPTURE_SHIFT;
		m->capture_unix_ms = 1 + rnd(rng) % UINT64_MAX;
	}
}

static void sample_error(struct proto_error *m, uint64_t *rng)
{
	memset(m, 0, sizeof(*m));
	m->code = (uint16_t)(1 + below(rng, 0xffff));
	random_message(m->message, rng);
}

/* A random valid message of type in *msg, encoded into buf; returns the frame length. */
static int encode_sample(uint16_t type, uint64_t *rng, struct proto_msg *msg, uint8_t *buf,
			 size_t cap)
{
	memset(msg, 0, sizeof(*msg));
	msg->header.type = type;
	switch (type) {
	case PROTO_HELLO:
		sample_hello(&msg->u.hello, rng);
		return proto_encode_hello(&msg->u.hello, buf, cap);
	case PROTO_WELCOME:
		sample_welcome(&msg->u.welcome, rng);
		return proto_encode_welcome(&msg->u.welcome, buf, cap);
	case PROTO_REFUSE:
		sample_refuse(&msg->u.refuse, rng);
		return proto_encode_refuse(&msg->u.refuse, buf, cap);
	case PROTO_EPOCH_BEGIN:
		sample_epoch_begin(&msg->u.epoch_begin, rng);
		return proto_encode_epoch_begin(&msg->u.epoch_begin, buf, cap);
	case PROTO_DATA:
		sample_data(&msg->u.data, rng, sample_blocks_max, sample_shift_max);
		return proto_encode_data(&msg->u.data, buf, cap);
	case PROTO_ZERO:
		sample_zero(&msg->u.zero, rng);
		return proto_encode_zero(&msg->u.zero, buf, cap);
	case PROTO_EPOCH_END:
		msg->u.epoch_end.epoch = 1 + below(rng, 1000000);
		msg->u.epoch_end.block_count = below(rng, PROTO_BLOCK_COUNT_MAX + 1);
		msg->u.epoch_end.merkle_root = rnd(rng);
		return proto_encode_epoch_end(&msg->u.epoch_end, buf, cap);
	case PROTO_EPOCH_ACK:
		msg->u.epoch_ack.epoch = 1 + rnd(rng) % UINT64_MAX;
		msg->u.epoch_ack.generation = rnd(rng);
		msg->u.epoch_ack.merkle_root = rnd(rng);
		return proto_encode_epoch_ack(&msg->u.epoch_ack, buf, cap);
	case PROTO_KEEPALIVE:
		return proto_encode_keepalive(buf, cap);
	case PROTO_ERROR:
		sample_error(&msg->u.error, rng);
		return proto_encode_error(&msg->u.error, buf, cap);
	case PROTO_PAGES:
		sample_pages(&msg->u.pages, rng);
		return proto_encode_pages(&msg->u.pages, buf, cap);
	case PROTO_ROUND:
		sample_round(&msg->u.round, rng);
		return proto_encode_round(&msg->u.round, buf, cap);
	}
	fail_msg("no sample for type %u", type);
	return -1;
}

/* Decodes a bare payload of type (no header) into msg. */
static int decode_payload(uint16_t type, const uint8_t *p, size_t n, struct proto_msg *msg)
{
	memset(msg, 0, sizeof(*msg));
	msg->header.type = type;
	switch (type) {
	case PROTO_HELLO:
		return proto_decode_hello(p, n, &msg->u.hello);
	case PROTO_WELCOME:
		return proto_decode_welcome(p, n, &msg->u.welcome);
	case PROTO_REFUSE:
		return proto_decode_refuse(p, n, &msg->u.refuse);
	case PROTO_EPOCH_BEGIN:
		return proto_decode_epoch_begin(p, n, &msg->u.epoch_begin);
	case PROTO_DATA:
		return proto_decode_data(p, n, &msg->u.data);
	case PROTO_ZERO:
		return proto_decode_zero(p, n, &msg->u.zero);
	case PROTO_EPOCH_END:
		return proto_decode_epoch_end(p, n, &msg->u.epoch_end);
	case PROTO_EPOCH_ACK:
		return proto_decode_epoch_ack(p, n, &msg->u.epoch_ack);
	case PROTO_KEEPALIVE:
		return proto_decode_keepalive(p, n);
	case PROTO_ERROR:
		return proto_decode_error(p, n, &msg->u.error);
	case PROTO_PAGES:
		return proto_decode_pages(p, n, &msg->u.pages);
	case PROTO_ROUND:
		return proto_decode_round(p, n, &msg->u.round);
	}
	return -EBADMSG;
}

/* Encodes a decoded message again into dst (which must not alias its buffer). */
static int reencode(const struct proto_msg *msg, uint8_t *dst, size_t cap)
{
	struct proto_data d;

	switch (msg->header.type) {
	case PROTO_HELLO:
		return proto_encode_hello(&msg->u.hello, dst, cap);
	case PROTO_WELCOME:
		return proto_encode_welcome(&msg->u.welcome, dst, cap);
	case PROTO_REFUSE:
		return proto_encode_refuse(&msg->u.refuse, dst, cap);
	case PROTO_EPOCH_BEGIN:
		return proto_encode_epoch_begin(&msg->u.epoch_begin, dst, cap);
	case PROTO_DATA:
		d = msg->u.data;
		for (uint32_t i = 0; i < d.block_count; i++)
			hashes_tmp[i] = proto_data_hash(&msg->u.data, i);
		d.hashes = hashes_tmp;
		d.hashes_le = NULL;
		return proto_encode_data(&d, dst, cap);
	case PROTO_PAGES: {
		struct proto_pages pg = msg->u.pages;

		for (uint32_t i = 0; i < pg.page_count; i++) {
			pages_idx_tmp[i] = proto_pages_index(&msg->u.pages, i);
			hashes_tmp[i] = proto_pages_hash(&msg->u.pages, i);
		}
		pg.page_index = pages_idx_tmp;
		pg.page_hashes = hashes_tmp;
		pg.entries_le = NULL;
		return proto_encode_pages(&pg, dst, cap);
	}
	case PROTO_ZERO:
		return proto_encode_zero(&msg->u.zero, dst, cap);
	case PROTO_EPOCH_END:
		return proto_encode_epoch_end(&msg->u.epoch_end, dst, cap);
	case PROTO_EPOCH_ACK:
		return proto_encode_epoch_ack(&msg->u.epoch_ack, dst, cap);
	case PROTO_KEEPALIVE:
		return proto_encode_keepalive(dst, cap);
	case PROTO_ERROR:
		return proto_encode_error(&msg->u.error, dst, cap);
	case PROTO_ROUND:
		return proto_encode_round(&msg->u.round, dst, cap);
	}
	fail_msg("reencode: type %u", msg->header.type);
	return -1;
}

/* An accepted frame must be canonical: encoding what was decoded gives it back. */
static void assert_canonical_frame(const uint8_t *buf, int len, const struct proto_msg *msg)
{
	int n = reencode(msg, out, sizeof(out));

	if (n != len || memcmp(out, buf, (size_t)len) != 0)
		fail_msg("seed %" PRIu64 ": accepted %s frame of %d bytes re-encodes to %d "
			 "different bytes",
			 test_seed, proto_type_name(msg->header.type), len, n);
}

/* The same for a bare payload (the header is ours, so compare after it). */
static void assert_canonical_payload(const uint8_t *p, size_t len, const struct proto_msg *msg)
{
	int n = reencode(msg, out, sizeof(out));

	if (n != (int)(PROTO_HEADER_BYTES + len) || memcmp(out + PROTO_HEADER_BYTES, p, len) != 0)
		fail_msg("seed %" PRIu64 ": accepted %s payload of %zu bytes re-encodes to %d "
			 "different bytes",
			 test_seed, proto_type_name(msg->header.type), len, n);
}

/* Bytes of the union member of type (the rest of the union is not its). */
static size_t member_bytes(uint16_t type)
{
	switch (type) {
	case PROTO_HELLO:
		return sizeof(struct proto_hello);
	case PROTO_WELCOME:
		return sizeof(struct proto_welcome);
	case PROTO_REFUSE:
		return sizeof(struct proto_refuse);
	case PROTO_EPOCH_BEGIN:
		return sizeof(struct proto_epoch_begin);
	case PROTO_ZERO:
		return sizeof(struct proto_zero);
	case PROTO_EPOCH_END:
		return sizeof(struct proto_epoch_end);
	case PROTO_EPOCH_ACK:
		return sizeof(struct proto_epoch_ack);
	case PROTO_ERROR:
		return sizeof(struct proto_error);
	case PROTO_ROUND:
		return sizeof(struct proto_round);
	}
	fail_msg("member_bytes: type %u", type);
	return 0;
}

static void assert_same_message(const struct proto_msg *want, const struct proto_msg *got)
{
	assert_int_equal(got->header.type, want->header.type);
	switch (want->header.type) {
	case PROTO_DATA: {
		const struct proto_data *a = &want->u.data, *b = &got->u.data;

		assert_int_equal(b->first_block, a->first_block);
		assert_int_equal(b->block_count, a->block_count);
		assert_int_equal(b->codec, a->codec);
		assert_int_equal(b->plaintext_bytes, a->plaintext_bytes);
		assert_int_equal(b->data_bytes, a->data_bytes);
		assert_null(b->hashes);
		for (uint32_t i = 0; i < a->block_count; i++)
			assert_int_equal(proto_data_hash(b, i), a->hashes[i]);
		assert_memory_equal(b->data, a->data, a->data_bytes);
		break;
	}
	case PROTO_PAGES: {
		const struct proto_pages *a = &want->u.pages, *b = &got->u.pages;

		assert_int_equal(b->block, a->block);
		assert_int_equal(b->block_hash, a->block_hash);
		assert_int_equal(b->codec, a->codec);
		assert_int_equal(b->page_count, a->page_count);
		assert_int_equal(b->plaintext_bytes, a->plaintext_bytes);
		assert_int_equal(b->data_bytes, a->data_bytes);
		assert_null(b->page_index);
		for (uint32_t i = 0; i < a->page_count; i++) {
			assert_int_equal(proto_pages_index(b, i), a->page_index[i]);
			assert_int_equal(proto_pages_hash(b, i), a->page_hashes[i]);
		}
		assert_memory_equal(b->data, a->data, a->data_bytes);
		break;
	}
	case PROTO_KEEPALIVE:
		break;
	default:
		/* Both sides were zeroed before their fields were set: padding is zero. */
		assert_memory_equal(&got->u, &want->u, member_bytes(want->header.type));
	}
}

/* --------------------------------------------------------------- tests */

static void test_round_trips(void **state)
{
	uint64_t rng = test_seed;
	struct proto_msg want, got;

	(void)state;
	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		for (int s = 0; s < SAMPLES_PER_TYPE * 4; s++) {
			int len = encode_sample(all_types[t], &rng, &want, frame, sizeof(frame));

			assert_true(len >= (int)PROTO_HEADER_BYTES);
			assert_int_equal(proto_decode(frame, (size_t)len, &got), len);
			assert_int_equal(got.header.type, all_types[t]);
			assert_int_equal(got.header.payload_bytes, len - PROTO_HEADER_BYTES);
			assert_same_message(&want, &got);
			assert_canonical_frame(frame, len, &got);
			/* The payload decoders alone agree with proto_decode. */
			assert_int_equal(decode_payload(all_types[t], frame + PROTO_HEADER_BYTES,
							(size_t)len - PROTO_HEADER_BYTES, &got),
					 0);
			assert_same_message(&want, &got);
		}
	}
}

/* Field offsets on the wire are the ones PROTOCOL.md documents. */
static void test_layout(void **state)
{
	struct proto_hello h;
	struct proto_welcome w;
	struct proto_data d;
	const uint8_t *p = frame + PROTO_HEADER_BYTES;
	uint64_t hs[2] = { 0x1111111111111111ull, 0x2222222222222222ull };
	uint8_t data[3] = { 7, 8, 9 };
	int len;

	(void)state;
	memset(&h, 0, sizeof(h));
	h.version_min = 1;
	h.version_max = 3;
	h.capabilities = PROTO_CAP_LZ4 | PROTO_CAP_RESUME;
	memset(h.volume_id, 0xab, sizeof(h.volume_id));
	strcpy(h.volume_name, "pg-data");
	h.size_bytes = 1ull << 30;
	h.block_bytes = 65536;
	h.generation = 7;
	h.epoch = 42;
	h.merkle_root = 0x0123456789abcdefull;
	h.history_count = 2;
	h.history[0] = (struct proto_generation){ 3, 0 };
	h.history[1] = (struct proto_generation){ 7, 40 };
	len = proto_encode_hello(&h, frame, sizeof(frame));
	assert_int_equal(len, PROTO_HEADER_BYTES + 136 + 32);
	/* the header */
	assert_memory_equal(frame, "PVRP", 4);
	assert_int_equal(ld16(frame + 4), PROTO_VERSION_HANDSHAKE);
	assert_int_equal(ld16(frame + 6), PROTO_HELLO);
	assert_int_equal(ld32(frame + 8), 0);
	assert_int_equal(ld32(frame + 12), 168);
	assert_int_equal(ld64(frame + 16), delta_hash_seeded(p, 168, PROTO_SEED_PAYLOAD));
	assert_int_equal(ld64(frame + 24), delta_hash_seeded(frame, 24, PROTO_SEED_HEADER));
	/* the payload */
	assert_int_equal(ld16(p + 0), 1);
	assert_int_equal(ld16(p + 2), 3);
	assert_int_equal(ld16(p + 4), 2);
	assert_int_equal(ld16(p + 6), 0);
	assert_int_equal(ld64(p + 8), 3);
	assert_int_equal(p[16], 0xab);
	assert_int_equal(p[31], 0xab);
	assert_string_equal((const char *)p + 32, "pg-data");
	assert_true(tu_is_zero(p + 32 + 7, 64 - 7));
	assert_int_equal(ld64(p + 96), 1ull << 30);
	assert_int_equal(ld32(p + 104), 65536);
	assert_int_equal(ld32(p + 108), 0);
	assert_int_equal(ld64(p + 112), 7);
	assert_int_equal(ld64(p + 120), 42);
	assert_int_equal(ld64(p + 128), 0x0123456789abcdefull);
	assert_int_equal(ld64(p + 136), 3);
	assert_int_equal(ld64(p + 144), 0);
	assert_int_equal(ld64(p + 152), 7);
	assert_int_equal(ld64(p + 160), 40);

	memset(&w, 0, sizeof(w));
	w.version = w.version_min = 1;
	w.version_max = 2;
	w.state = PROTO_STATE_SYNCING;
	w.capabilities = 1;
	w.generation = 5;
	w.epoch = 6;
	w.merkle_root = 9;
	w.resume_epoch = 7;
	w.resume_block = 1234;
	memset(w.volume_id, 0xcd, sizeof(w.volume_id));
	assert_int_equal(proto_encode_welcome(&w, frame, sizeof(frame)), PROTO_HEADER_BYTES + 72);
	assert_int_equal(ld16(frame + 4), PROTO_VERSION_HANDSHAKE);
	assert_int_equal(ld16(p + 0), 1);
	assert_int_equal(ld16(p + 4), 2);
	assert_int_equal(p[6], PROTO_STATE_SYNCING);
	assert_int_equal(ld64(p + 16), 5);
	assert_int_equal(ld64(p + 40), 7);
	assert_int_equal(ld64(p + 48), 1234);
	assert_int_equal(p[56], 0xcd);
	assert_int_equal(p[71], 0xcd);

	memset(&d, 0, sizeof(d));
	d.first_block = 100;
	d.block_count = 2;
	d.codec = PROTO_CODEC_LZ4;
	d.plaintext_bytes = 8192;
	d.hashes = hs;
	d.data = data;
	d.data_bytes = sizeof(data);
	assert_int_equal(proto_encode_data(&d, frame, sizeof(frame)),
			 PROTO_HEADER_BYTES + 24 + 16 + 3);
	assert_int_equal(ld16(frame + 4), PROTO_VERSION_MAX);
	assert_int_equal(ld64(p + 0), 100);
	assert_int_equal(ld32(p + 8), 2);
	assert_int_equal(ld16(p + 12), PROTO_CODEC_LZ4);
	assert_int_equal(ld16(p + 14), 0);
	assert_int_equal(ld32(p + 16), 8192);
	assert_int_equal(ld32(p + 20), 3);
	assert_int_equal(ld64(p + 24), hs[0]);
	assert_int_equal(ld64(p + 32), hs[1]);
	assert_memory_equal(p + 40, data, 3);

	{
		struct proto_round rd = { .round = 3,
					  .flags = PROTO_ROUND_FINAL,
					  .capture_unix_ms = 0x0102030405060708ull };

		assert_int_equal(proto_encode_round(&rd, frame, sizeof(frame)),
				 PROTO_HEADER_BYTES + 16);
		assert_int_equal(ld16(frame + 4), PROTO_VERSION_MAX);
		assert_int_equal(ld16(frame + 6), PROTO_ROUND);
		assert_int_equal(ld32(p + 0), 3);
		assert_int_equal(ld32(p + 4), PROTO_ROUND_FINAL);
		assert_int_equal(ld64(p + 8), 0x0102030405060708ull);
	}
}

/*
 * The one prefix that is a frame of its own: an EPOCH_BEGIN with a capture time
 * cut right before it is the 48-byte form (PROTO_CAP_CAPTURE_TIME not granted).
 */
static bool optional_tail_prefix(uint16_t type, size_t plen, size_t n)
{
	return type == PROTO_EPOCH_BEGIN && plen == PROTO_EPOCH_BEGIN_BYTES &&
	       n == PROTO_EPOCH_BEGIN_V1_BYTES;
}

static void test_truncations(void **state)
{
	uint64_t rng = test_seed ^ 0x7472756e63ull;
	struct proto_msg want, got;

	(void)state;
	sample_small(true);
	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		for (int s = 0; s < SAMPLES_PER_TYPE; s++) {
			int len = encode_sample(all_types[t], &rng, &want, frame, sizeof(frame));
			size_t plen = (size_t)len - PROTO_HEADER_BYTES;

			assert_true(len > 0);
			/*
			 * A short frame is incomplete, never misread; a short payload is
			 * malformed (its fields fix its length). Each prefix sits in a
			 * buffer of exactly its size, so ASan sees any read past it.
			 */
			for (int n = 0; n < len; n++) {
				uint8_t *b = exact_copy(frame, (size_t)n);

				assert_int_equal(proto_decode(b, (size_t)n, &got), -EAGAIN);
				free(b);
			}
			for (size_t n = 0; n < plen; n++) {
				uint8_t *b = exact_copy(frame + PROTO_HEADER_BYTES, n);

				if (optional_tail_prefix(all_types[t], plen, n)) {
					assert_int_equal(decode_payload(all_types[t], b, n, &got),
							 0);
					assert_true(got.u.epoch_begin.capture_unix_ms == 0);
				} else {
					assert_int_equal(decode_payload(all_types[t], b, n, &got),
							 -EBADMSG);
				}
				free(b);
			}
		}
	}
}

/* Every other prefix of a payload, re-signed as a whole frame, is refused. */
static void test_forged_truncations(void **state)
{
	uint64_t rng = test_seed ^ 0x666f726765ull;
	static uint8_t payload[PROTO_FRAME_PAYLOAD_MAX];
	struct proto_msg want, got;

	(void)state;
	sample_small(true);
	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		for (int s = 0; s < SAMPLES_PER_TYPE / 4; s++) {
			int len = encode_sample(all_types[t], &rng, &want, frame, sizeof(frame));
			size_t plen = (size_t)len - PROTO_HEADER_BYTES;

			memcpy(payload, frame + PROTO_HEADER_BYTES, plen);
			for (size_t n = 0; n < plen; n++) {
				size_t flen = forge(frame, all_types[t], payload, n);

				assert_int_equal(proto_decode(frame, flen, &got),
						 optional_tail_prefix(all_types[t], plen, n)
							 ? (int)flen
							 : -EBADMSG);
			}
		}
	}
}

static void test_header_bit_flips(void **state)
{
	uint64_t rng = test_seed ^ 0x666c6970ull;
	struct proto_msg want, got;

	(void)state;
	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		for (int s = 0; s < 4; s++) {
			int len = encode_sample(all_types[t], &rng, &want, frame, sizeof(frame));

			for (size_t bit = 0; bit < PROTO_HEADER_BYTES * 8; bit++) {
				frame[bit / 8] ^= (uint8_t)(1u << (bit % 8));
				assert_int_equal(proto_decode(frame, (size_t)len, &got), -EBADMSG);
				assert_int_equal(
					proto_decode_header(frame, PROTO_HEADER_BYTES, &got.header),
					-EBADMSG);
				frame[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			}
			assert_int_equal(proto_decode(frame, (size_t)len, &got), len);
		}
	}
}

/*
 * Payload bit flips: refused by the payload checksum as they arrive; re-signed
 * (as a buggy or hostile peer would send them), refused or canonical.
 */
static void test_payload_bit_flips(void **state)
{
	uint64_t rng = test_seed ^ 0x70666c6970ull;
	struct proto_msg want, got;

	(void)state;
	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		for (int s = 0; s < 4; s++) {
			int len = encode_sample(all_types[t], &rng, &want, frame, sizeof(frame));
			size_t plen = (size_t)len - PROTO_HEADER_BYTES;
			/* every bit of small payloads; 256 random ones of a large DATA */
			bool every = plen * 8 <= 4096;
			size_t bits = every ? plen * 8 : 256;

			for (size_t b = 0; b < bits; b++) {
				size_t bit = every ? b : below(&rng, plen * 8);
				uint8_t *byte = frame + PROTO_HEADER_BYTES + bit / 8;
				int r;

				*byte ^= (uint8_t)(1u << (bit % 8));
				assert_int_equal(proto_decode(frame, (size_t)len, &got), -EBADMSG);
				forge(frame, all_types[t], frame + PROTO_HEADER_BYTES, plen);
				r = proto_decode(frame, (size_t)len, &got);
				if (r != -EBADMSG) {
					assert_int_equal(r, len);
					assert_canonical_frame(frame, len, &got);
				}
				*byte ^= (uint8_t)(1u << (bit % 8));
				forge(frame, all_types[t], frame + PROTO_HEADER_BYTES, plen);
			}
			assert_int_equal(proto_decode(frame, (size_t)len, &got), len);
		}
	}
}

/* Header fields out of range, behind valid checksums. */
static void test_header_fields(void **state)
{
	struct proto_header h;
	struct proto_msg got;
	static const uint16_t bad_types[] = { 0, PROTO_TYPE_MAX + 1, 32, 0x7fff, 0xffff };
	static const uint16_t bad_versions[] = { 0, PROTO_VERSION_MAX + 1, 0xffff };
	static const uint32_t bad_magics[] = { 0, PROTO_MAGIC ^ 1, 0x51525650u, 0xffffffffu };
	size_t len;

	(void)state;
	/* A valid keepalive, the baseline. */
	len = forge_header(frame, PROTO_MAGIC, PROTO_VERSION_MAX, PROTO_KEEPALIVE, 0, 0, 0);
	assert_int_equal(proto_decode(frame, len, &got), (int)len);
	assert_int_equal(got.header.type, PROTO_KEEPALIVE);

	for (size_t i = 0; i < ARRAY_SIZE(bad_magics); i++) {
		forge_header(frame, bad_magics[i], PROTO_VERSION_MAX, PROTO_KEEPALIVE, 0, 0, 0);
		assert_int_equal(proto_decode_header(frame, len, &h), -EBADMSG);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad_versions); i++) {
		forge_header(frame, PROTO_MAGIC, bad_versions[i], PROTO_KEEPALIVE, 0, 0, 0);
		assert_int_equal(proto_decode_header(frame, len, &h), -EBADMSG);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad_types); i++) {
		forge_header(frame, PROTO_MAGIC, PROTO_VERSION_MAX, bad_types[i], 0, 0, 0);
		assert_int_equal(proto_decode_header(frame, len, &h), -EBADMSG);
		assert_string_equal(proto_type_name(bad_types[i]), "unknown");
	}
	for (unsigned bit = 0; bit < 32; bit++) {
		forge_header(frame, PROTO_MAGIC, PROTO_VERSION_MAX, PROTO_KEEPALIVE, 1u << bit, 0,
			     0);
		assert_int_equal(proto_decode_header(frame, len, &h), -EBADMSG);
	}
	/* A wrong payload checksum. */
	forge_header(frame, PROTO_MAGIC, PROTO_VERSION_MAX, PROTO_KEEPALIVE, 0, 0, 0);
	frame[16] ^= 1;
	st64(frame + 24, delta_hash_seeded(frame, 24, PROTO_SEED_HEADER));
	assert_int_equal(proto_decode_header(frame, len, &h), 0);
	assert_int_equal(proto_decode(frame, len, &got), -EBADMSG);
	assert_int_equal(proto_check_payload(&h, frame + PROTO_HEADER_BYTES, 0), -EBADMSG);
	/* proto_check_payload wants exactly payload_bytes. */
	forge_header(frame, PROTO_MAGIC, PROTO_VERSION_MAX, PROTO_KEEPALIVE, 0, 0, 0);
	assert_int_equal(proto_decode_header(frame, len, &h), 0);
	assert_int_equal(proto_check_payload(&h, frame + PROTO_HEADER_BYTES, 0), 0);
	assert_int_equal(proto_check_payload(&h, frame + PROTO_HEADER_BYTES, 1), -EBADMSG);

	/* Short headers are incomplete. */
	for (size_t n = 0; n < PROTO_HEADER_BYTES; n++)
		assert_int_equal(proto_decode_header(frame, n, &h), -EAGAIN);

	/*
	 * Oversized or out-of-bounds payload lengths are refused from the header
	 * alone: a reader never waits for (or allocates) 4 GiB.
	 */
	{
		static const struct {
			uint16_t type;
			uint32_t payload_bytes;
		} bad_lengths[] = {
			{ PROTO_DATA, PROTO_FRAME_PAYLOAD_MAX + 1 },
			{ PROTO_DATA, UINT32_MAX },
			{ PROTO_DATA, PROTO_DATA_PAYLOAD_MAX + 1 },
			{ PROTO_DATA, PROTO_DATA_FIXED_BYTES + 8 },
			{ PROTO_DATA, 0 },
			{ PROTO_HELLO, PROTO_HELLO_FIXED_BYTES },
			{ PROTO_HELLO, PROTO_HELLO_PAYLOAD_MAX + 1 },
			{ PROTO_WELCOME, PROTO_WELCOME_BYTES - 1 },
			{ PROTO_WELCOME, PROTO_WELCOME_BYTES + 1 },
			{ PROTO_REFUSE, PROTO_REFUSE_FIXED_BYTES - 1 },
			{ PROTO_REFUSE, PROTO_REFUSE_FIXED_BYTES + PROTO_MESSAGE_BYTES_MAX + 1 },
			{ PROTO_EPOCH_BEGIN, PROTO_EPOCH_BEGIN_BYTES + 8 },
			{ PROTO_ZERO, PROTO_ZERO_BYTES - 1 },
			{ PROTO_EPOCH_END, 0 },
			{ PROTO_EPOCH_ACK, PROTO_EPOCH_ACK_BYTES * 2 },
			{ PROTO_KEEPALIVE, 1 },
			{ PROTO_ERROR, PROTO_ERROR_FIXED_BYTES + PROTO_MESSAGE_BYTES_MAX + 1 },
			{ PROTO_ERROR, 0xffffffffu },
			{ PROTO_ROUND, 0 },
			{ PROTO_ROUND, PROTO_ROUND_BYTES - 1 },
			{ PROTO_ROUND, PROTO_ROUND_BYTES + 1 },
		};

		for (size_t i = 0; i < ARRAY_SIZE(bad_lengths); i++) {
			uint16_t v = bad_lengths[i].type <= PROTO_REFUSE ? PROTO_VERSION_HANDSHAKE
									 : PROTO_VERSION_MAX;

			forge_header(frame, PROTO_MAGIC, v, bad_lengths[i].type, 0,
				     bad_lengths[i].payload_bytes, 0);
			assert_int_equal(proto_decode_header(frame, PROTO_HEADER_BYTES, &h),
					 -EBADMSG);
			assert_int_equal(proto_decode(frame, PROTO_HEADER_BYTES, &got), -EBADMSG);
		}
	}
}

/* Build a DATA payload by hand: fixed part, hash_count hashes, data_len data bytes. */
static size_t data_payload(uint8_t *p, uint64_t first, uint32_t count, uint16_t codec,
			   uint16_t reserved, uint32_t plaintext, uint32_t data_field,
			   uint32_t hash_count, uint32_t data_len)
{
	size_t n = PROTO_DATA_FIXED_BYTES;

	st64(p + 0, first);
	st32(p + 8, count);
	st16(p + 12, codec);
	st16(p + 14, reserved);
	st32(p + 16, plaintext);
	st32(p + 20, data_field);
	for (uint32_t i = 0; i < hash_count; i++, n += 8)
		st64(p + n, 0x1000 + i);
	memset(p + n, 0x5a, data_len);
	return n + data_len;
}

static void expect_data(int want, uint64_t first, uint32_t count, uint16_t codec, uint16_t reserved,
			uint32_t plaintext, uint32_t data_field, uint32_t hash_count,
			uint32_t data_len)
{
	uint8_t *p = frame + PROTO_HEADER_BYTES;
	size_t n = data_payload(p, first, count, codec, reserved, plaintext, data_field, hash_count,
				data_len);
	struct proto_data d;
	struct proto_msg got;
	int r = proto_decode_data(p, n, &d);

	if (r != want)
		fail_msg("DATA first %" PRIu64 " count %u codec %u plaintext %u data %u hashes %u "
			 "len %u: got %d, want %d",
			 first, count, codec, plaintext, data_field, hash_count, data_len, r, want);
	/* Through the whole-frame path too, when the length fits a frame. */
	if (n <= PROTO_DATA_PAYLOAD_MAX && n >= PROTO_DATA_FIXED_BYTES + 9) {
		size_t flen = forge(frame, PROTO_DATA, p, n);

		r = proto_decode(frame, flen, &got);
		assert_int_equal(r, want == 0 ? (int)flen : want);
	}
	/* The encoder refuses the same fields (when the shape is self-consistent). */
	if (want != 0 && hash_count == count && data_len == data_field &&
	    count <= PROTO_DATA_BLOCKS_MAX && data_len <= PROTO_DATA_PLAINTEXT_MAX &&
	    reserved == 0) {
		d.first_block = first;
		d.block_count = count;
		d.codec = codec;
		d.plaintext_bytes = plaintext;
		d.data_bytes = data_field;
		d.hashes = hashes_src;
		d.hashes_le = NULL;
		d.data = data_src;
		assert_int_equal(proto_encode_data(&d, out, sizeof(out)), -EINVAL);
	}
}

static void test_data_bounds(void **state)
{
	const uint64_t max = PROTO_BLOCK_COUNT_MAX;
	const uint32_t bmax = PROTO_DATA_BLOCKS_MAX;

	(void)state;
	expect_data(0, 0, 1, PROTO_CODEC_RAW, 0, 4096, 4096, 1, 4096);
	expect_data(0, max - 3, 3, PROTO_CODEC_LZ4, 0, 3 * 4096, 100, 3, 100);
	/* run length */
	expect_data(-EBADMSG, 0, 0, PROTO_CODEC_RAW, 0, 1, 1, 0, 1);
	expect_data(-EBADMSG, 0, bmax + 1, PROTO_CODEC_LZ4, 0, PROTO_DATA_PLAINTEXT_MAX, 10,
		    bmax + 1, 10);
	expect_data(-EBADMSG, 0, UINT32_MAX, PROTO_CODEC_LZ4, 0, PROTO_DATA_PLAINTEXT_MAX, 10, 4,
		    10);
	/* run length against the hashes present */
	expect_data(-EBADMSG, 0, 3, PROTO_CODEC_LZ4, 0, 3 * 4096, 100, 2, 100);
	expect_data(-EBADMSG, 0, 3, PROTO_CODEC_LZ4, 0, 3 * 4096, 100, 4, 100);
	expect_data(-EBADMSG, 0, 3, PROTO_CODEC_LZ4, 0, 3 * 4096, 100, 0, 100);
	/* data length against the payload */
	expect_data(-EBADMSG, 0, 2, PROTO_CODEC_LZ4, 0, 8192, 100, 2, 99);
	expect_data(-EBADMSG, 0, 2, PROTO_CODEC_LZ4, 0, 8192, 100, 2, 101);
	expect_data(-EBADMSG, 0, 2, PROTO_CODEC_LZ4, 0, 8192, UINT32_MAX, 2, 100);
	expect_data(-EBADMSG, 0, 1, PROTO_CODEC_RAW, 0, 4096, 4096, 1, 4095);
	/* codec */
	expect_data(-EBADMSG, 0, 1, 2, 0, 4096, 100, 1, 100);
	expect_data(-EBADMSG, 0, 1, 0xffff, 0, 4096, 4096, 1, 4096);
	expect_data(-EBADMSG, 0, 1, PROTO_CODEC_RAW, 0, 4096, 100, 1, 100);
	expect_data(-EBADMSG, 0, 1, PROTO_CODEC_LZ4, 0, 4096, 4096, 1, 4096);
	expect_data(-EBADMSG, 0, 1, PROTO_CODEC_LZ4, 0, 4096, 4097, 1, 4097);
	expect_data(-EBADMSG, 0, 1, PROTO_CODEC_LZ4, 0, 4096, 0, 1, 0);
	/* reserved */
	expect_data(-EBADMSG, 0, 1, PROTO_CODEC_RAW, 1, 4096, 4096, 1, 4096);
	/* plaintext size */
	expect_data(-EBADMSG, 0, 1, PROTO_CODEC_RAW, 0, 0, 0, 1, 0);
	expect_data(-EBADMSG, 0, 1, PROTO_CODEC_LZ4, 0, PROTO_DATA_PLAINTEXT_MAX + 1, 10, 1, 10);
	expect_data(-EBADMSG, 0, 3, PROTO_CODEC_LZ4, 0, 2 * PROTO_BLOCK_BYTES_MIN, 10, 3, 10);
	expect_data(0, 0, 3, PROTO_CODEC_LZ4, 0, 2 * PROTO_BLOCK_BYTES_MIN + 1, 10, 3, 10);
	/* the run inside 2^32 blocks, no wrap */
	expect_data(-EBADMSG, max - 2, 3, PROTO_CODEC_LZ4, 0, 3 * 4096, 100, 3, 100);
	expect_data(-EBADMSG, max, 1, PROTO_CODEC_RAW, 0, 4096, 4096, 1, 4096);
	expect_data(-EBADMSG, UINT64_MAX, 1, PROTO_CODEC_RAW, 0, 4096, 4096, 1, 4096);
	expect_data(-EBADMSG, UINT64_MAX - 1, 2, PROTO_CODEC_LZ4, 0, 8192, 100, 2, 100);
}

/* A PAGES payload with fields set by hand, then decoded. */
static int pages_decode(uint32_t count, uint32_t plaintext, uint16_t codec, uint32_t data_bytes,
			const uint32_t *idx, uint32_t reserved, size_t payload_delta)
{
	struct proto_pages got;
	uint8_t *p = out;
	size_t n = PROTO_PAGES_FIXED_BYTES + (size_t)count * PROTO_PAGE_ENTRY_BYTES + data_bytes;
	uint32_t v;

	memset(out, 0, n + 16);
	memcpy(p + 16, &codec, 2);
	memcpy(p + 20, &count, 4);
	memcpy(p + 24, &plaintext, 4);
	memcpy(p + 28, &data_bytes, 4);
	for (uint32_t i = 0; i < count; i++) {
		v = idx[i];
		memcpy(p + 32 + i * 16, &v, 4);
		memcpy(p + 32 + i * 16 + 4, &reserved, 4);
	}
	return proto_decode_pages(out, n + payload_delta, &got);
}

/* PAGES: every bound a receiver relies on is checked by the decoder. */
static void test_pages_bounds(void **state)
{
	static const uint32_t up[] = { 0, 1, 2, 3 }, same[] = { 1, 1 }, down[] = { 2, 1 };
	static const uint32_t big[] = { PROTO_PAGES_MAX };
	struct proto_pages m = { .block = 7,
				 .block_hash = 1,
				 .codec = PROTO_CODEC_RAW,
				 .page_count = 2,
				 .plaintext_bytes = 8192,
				 .page_index = same,
				 .page_hashes = hashes_src,
				 .data = data_src,
				 .data_bytes = 8192 };

	(void)state;
	assert_int_equal(pages_decode(4, 4 * 4096, PROTO_CODEC_RAW, 4 * 4096, up, 0, 0), 0);
	assert_int_equal(pages_decode(2, 4096 + 512, PROTO_CODEC_RAW, 4096 + 512, up, 0, 0), 0);
	assert_int_equal(pages_decode(2, 8192, PROTO_CODEC_LZ4, 100, up, 0, 0), 0);
	/* indexes: ascending, distinct, in range; reserved word zero */
	assert_int_equal(pages_decode(2, 8192, PROTO_CODEC_RAW, 8192, same, 0, 0), -EBADMSG);
	assert_int_equal(pages_decode(2, 8192, PROTO_CODEC_RAW, 8192, down, 0, 0), -EBADMSG);
	assert_int_equal(pages_decode(1, 4096, PROTO_CODEC_RAW, 4096, big, 0, 0), -EBADMSG);
	assert_int_equal(pages_decode(1, 4096, PROTO_CODEC_RAW, 4096, up, 1, 0), -EBADMSG);
	/* counts and sizes */
	assert_int_equal(pages_decode(0, 0, PROTO_CODEC_RAW, 0, up, 0, 0), -EBADMSG);
	assert_int_equal(pages_decode(2, 8193, PROTO_CODEC_RAW, 8193, up, 0, 0), -EBADMSG);
	assert_int_equal(pages_decode(2, 4096 + 511, PROTO_CODEC_RAW, 4096 + 511, up, 0, 0),
			 -EBADMSG);
	assert_int_equal(pages_decode(2, 8192, PROTO_CODEC_RAW, 8191, up, 0, 0), -EBADMSG);
	assert_int_equal(pages_decode(2, 8192, PROTO_CODEC_LZ4, 8192, up, 0, 0), -EBADMSG);
	assert_int_equal(pages_decode(2, 8192, 7, 100, up, 0, 0), -EBADMSG);
	/* the payload's length against the counts */
	assert_int_equal(pages_decode(2, 8192, PROTO_CODEC_RAW, 8192, up, 0, 1), -EBADMSG);
	assert_int_equal(pages_decode(2, 8192, PROTO_CODEC_LZ4, 100, up, 0, (size_t)-1), -EBADMSG);
	/* the encoder refuses what the decoder would */
	assert_int_equal(proto_encode_pages(&m, frame, sizeof(frame)), -EINVAL);
	m.page_index = down;
	assert_int_equal(proto_encode_pages(&m, frame, sizeof(frame)), -EINVAL);
	m.page_index = up;
	assert_true(proto_encode_pages(&m, frame, sizeof(frame)) > 0);
	assert_int_equal(proto_encode_pages_prefix(&m, frame, 10), -ENOSPC);
}

/* The largest DATA frame: 8192 blocks of 512 bytes, raw, and its zero-copy twin. */
static void test_data_max_and_prefix(void **state)
{
	uint64_t rng = test_seed ^ 0x6d6178ull;
	struct proto_data d;
	struct proto_msg got;
	int len, plen;

	(void)state;
	memset(&d, 0, sizeof(d));
	d.first_block = PROTO_BLOCK_COUNT_MAX - PROTO_DATA_BLOCKS_MAX;
	d.block_count = PROTO_DATA_BLOCKS_MAX;
	d.codec = PROTO_CODEC_RAW;
	d.plaintext_bytes = d.data_bytes = PROTO_DATA_PLAINTEXT_MAX;
	for (uint32_t i = 0; i < d.block_count; i++)
		hashes_src[i] = rnd(&rng);
	for (uint32_t i = 0; i < d.data_bytes; i++)
		data_src[i] = (uint8_t)rnd(&rng);
	d.hashes = hashes_src;
	d.data = data_src;
	len = proto_encode_data(&d, frame, sizeof(frame));
	assert_int_equal(len, PROTO_HEADER_BYTES + PROTO_DATA_PAYLOAD_MAX);
	assert_int_equal(proto_decode(frame, (size_t)len, &got), len);
	assert_int_equal(got.u.data.block_count, PROTO_DATA_BLOCKS_MAX);
	assert_int_equal(proto_data_hash(&got.u.data, PROTO_DATA_BLOCKS_MAX - 1),
			 hashes_src[PROTO_DATA_BLOCKS_MAX - 1]);
	assert_ptr_equal(got.u.data.data, frame + len - PROTO_DATA_PLAINTEXT_MAX);
	assert_int_equal(proto_encode_data(&d, frame, (size_t)len - 1), -ENOSPC);

	/* Zero-copy: the prefix followed by the data is the same frame. */
	for (int s = 0; s < 50; s++) {
		sample_data(&d, &rng, s == 0 ? PROTO_DATA_BLOCKS_MAX / 8 : 200, 3);
		len = proto_encode_data(&d, frame, sizeof(frame));
		plen = proto_encode_data_prefix(&d, out, sizeof(out));
		assert_int_equal(plen, len - (int)d.data_bytes);
		assert_memory_equal(out, frame, (size_t)plen);
		assert_int_equal(proto_encode_data_prefix(&d, out, (size_t)plen - 1), -ENOSPC);
	}
	d.hashes = NULL;
	assert_int_equal(proto_encode_data_prefix(&d, out, sizeof(out)), -EINVAL);
	assert_int_equal(proto_encode_data(&d, out, sizeof(out)), -EINVAL);

	/* Hashes need no alignment: decode from an odd address. */
	sample_data(&d, &rng, 16, 3);
	len = proto_encode_data(&d, frame + 1, sizeof(frame) - 1);
	assert_int_equal(proto_decode(frame + 1, (size_t)len, &got), len);
	for (uint32_t i = 0; i < d.block_count; i++)
		assert_int_equal(proto_data_hash(&got.u.data, i), d.hashes[i]);
}

static void hello_valid(struct proto_hello *h)
{
	memset(h, 0, sizeof(*h));
	h->version_min = h->version_max = 1;
	strcpy(h->volume_name, "vol");
	h->size_bytes = 1 << 20;
	h->block_bytes = 4096;
	h->generation = 2;
	h->epoch = 5;
	h->history_count = 1;
	h->history[0] = (struct proto_generation){ 2, 0 };
}

/* Encodes h (which must be valid), lets edit change the payload, then decodes. */
static int hello_edited(const struct proto_hello *h, void (*edit)(uint8_t *p, size_t *n))
{
	struct proto_hello got;
	int len = proto_encode_hello(h, frame, sizeof(frame));
	size_t n;

	assert_true(len > 0);
	n = (size_t)len - PROTO_HEADER_BYTES;
	edit(frame + PROTO_HEADER_BYTES, &n);
	return proto_decode_hello(frame + PROTO_HEADER_BYTES, n, &got);
}

static void edit_name_empty(uint8_t *p, size_t *n)
{
	(void)n;
	memset(p + 32, 0, PROTO_VOLUME_NAME_BYTES);
}

static void edit_name_unterminated(uint8_t *p, size_t *n)
{
	(void)n;
	memset(p + 32, 'a', PROTO_VOLUME_NAME_BYTES);
}

static void edit_name_tail(uint8_t *p, size_t *n)
{
	(void)n;
	p[32 + PROTO_VOLUME_NAME_BYTES - 1] = 'x';
}

static void edit_name_control(uint8_t *p, size_t *n)
{
	(void)n;
	p[33] = '\n';
}

static void edit_name_high(uint8_t *p, size_t *n)
{
	(void)n;
	p[33] = 0xc3;
}

static void edit_reserved_a(uint8_t *p, size_t *n)
{
	(void)n;
	p[6] = 1;
}

static void edit_reserved_b(uint8_t *p, size_t *n)
{
	(void)n;
	p[111] = 0x80;
}

static void edit_count_zero(uint8_t *p, size_t *n)
{
	(void)n;
	st16(p + 4, 0);
}

static void edit_count_more(uint8_t *p, size_t *n)
{
	(void)n;
	st16(p + 4, 2); /* claims two entries, carries one */
}

static void edit_count_huge(uint8_t *p, size_t *n)
{
	(void)n;
	st16(p + 4, 0xffff);
}

static void edit_extra_entry(uint8_t *p, size_t *n)
{
	memset(p + *n, 0, PROTO_HISTORY_ENTRY_BYTES); /* one more entry than counted */
	*n += PROTO_HISTORY_ENTRY_BYTES;
}

/* PROTO_HISTORY_MAX + 1 entries, all present and well ordered: too many. */
static void edit_count_over(uint8_t *p, size_t *n)
{
	st16(p + 4, PROTO_HISTORY_MAX + 1);
	for (uint32_t i = 1; i <= PROTO_HISTORY_MAX; i++, *n += PROTO_HISTORY_ENTRY_BYTES) {
		st64(p + *n, 100 + i);
		st64(p + *n + 8, 0);
	}
}

static void edit_none(uint8_t *p, size_t *n)
{
	(void)p;
	(void)n;
}

static void test_hello_bounds(void **state)
{
	struct proto_hello h;

	(void)state;
	hello_valid(&h);
	assert_int_equal(hello_edited(&h, edit_none), 0);
	assert_int_equal(hello_edited(&h, edit_name_empty), -EBADMSG);
	assert_int_equal(hello_edited(&h, edit_name_unterminated), -EBADMSG);
	assert_int_equal(hello_edited(&h, edit_name_tail), -EBADMSG);
	assert_int_equal(hello_edited(&h, edit_name_control), -EBADMSG);
	assert_int_equal(hello_edited(&h, edit_name_high), -EBADMSG);
	assert_int_equal(hello_edited(&h, edit_reserved_a), -EBADMSG);
	assert_int_equal(hello_edited(&h, edit_reserved_b), -EBADMSG);
	assert_int_equal(hello_edited(&h, edit_count_zero), -EBADMSG);
	assert_int_equal(hello_edited(&h, edit_count_more), -EBADMSG);
	assert_int_equal(hello_edited(&h, edit_count_huge), -EBADMSG);
	assert_int_equal(hello_edited(&h, edit_extra_entry), -EBADMSG);
	assert_int_equal(hello_edited(&h, edit_count_over), -EBADMSG);

	/* The encoder refuses what the decoder would (each case also fails to decode,
	 * checked by forging its fields into a valid encoding below). */
	{
		struct proto_hello b;
		int len;

#define HELLO_BAD(...)                                                                   \
	do {                                                                             \
		hello_valid(&b);                                                         \
		__VA_ARGS__;                                                             \
		assert_int_equal(proto_encode_hello(&b, frame, sizeof(frame)), -EINVAL); \
	} while (0)
		HELLO_BAD(b.version_min = 0);
		HELLO_BAD(b.version_min = 2);
		HELLO_BAD(b.volume_name[0] = 0);
		HELLO_BAD(memset(b.volume_name, 'v', sizeof(b.volume_name)));
		HELLO_BAD(b.volume_name[1] = '\t');
		HELLO_BAD(b.block_bytes = 0);
		HELLO_BAD(b.block_bytes = 256);
		HELLO_BAD(b.block_bytes = 3 * 4096);
		HELLO_BAD(b.block_bytes = PROTO_BLOCK_BYTES_MAX * 2);
		HELLO_BAD(b.size_bytes = 0);
		HELLO_BAD(b.block_bytes = 512; b.size_bytes = 512ull * PROTO_BLOCK_COUNT_MAX + 1);
		HELLO_BAD(b.size_bytes = UINT64_MAX);
		HELLO_BAD(b.history_count = 0);
		HELLO_BAD(b.history_count = PROTO_HISTORY_MAX + 1);
		HELLO_BAD(b.generation = 3);
		HELLO_BAD(b.history[0].start_epoch = 6);
		HELLO_BAD(b.history_count = 2; b.history[1] = b.history[0]);
		HELLO_BAD(b.history_count = 2; b.history[0] = (struct proto_generation){ 3, 0 };
			  b.history[1] = (struct proto_generation){ 2, 0 });
		HELLO_BAD(b.history_count = 2; b.history[0] = (struct proto_generation){ 1, 4 };
			  b.history[1] = (struct proto_generation){ 2, 3 });
#undef HELLO_BAD

		/* Edge values that are fine. */
		hello_valid(&b);
		b.block_bytes = 512;
		b.size_bytes = 512ull * PROTO_BLOCK_COUNT_MAX;
		assert_true(proto_encode_hello(&b, frame, sizeof(frame)) > 0);
		b.block_bytes = PROTO_BLOCK_BYTES_MAX;
		b.size_bytes = 1;
		memset(b.volume_name, '~', PROTO_VOLUME_NAME_BYTES - 1);
		b.volume_name[PROTO_VOLUME_NAME_BYTES - 1] = 0;
		len = proto_encode_hello(&b, frame, sizeof(frame));
		assert_true(len > 0);
		/* garbage after the NUL of a struct's name is not sent */
		hello_valid(&b);
		memset(b.volume_name, 'z', sizeof(b.volume_name));
		memcpy(b.volume_name, "ok", 3);
		len = proto_encode_hello(&b, frame, sizeof(frame));
		assert_true(len > 0);
		assert_true(tu_is_zero(frame + PROTO_HEADER_BYTES + 32 + 2, 62));

		/* The decoder's side of the same rules: patch fields of a valid payload. */
		hello_valid(&b);
		b.history_count = 2;
		b.history[0] = (struct proto_generation){ 1, 0 };
		b.history[1] = (struct proto_generation){ 2, 3 };
		len = proto_encode_hello(&b, frame, sizeof(frame));
		assert_true(len > 0);
		{
			static const struct {
				size_t off, size;
				uint64_t value;
			} patches[] = {
				{ 0, 2, 0 },		 /* version_min 0 */
				{ 0, 2, 2 },		 /* min > max */
				{ 96, 8, 0 },		 /* size 0 */
				{ 104, 4, 0 },		 /* block 0 */
				{ 104, 4, 1000 },	 /* not a power of two */
				{ 104, 4, 256 },	 /* below the minimum */
				{ 104, 4, 8u << 20 },	 /* above the maximum */
				{ 104, 4, 0x80000000u }, /* far above */
				{ 112, 8, 1 },		 /* not the last history entry */
				{ 120, 8, 2 },		 /* epoch before the last start */
				{ 136, 8, 2 },		 /* generations not increasing */
				{ 144, 8, 4 },		 /* start epochs decreasing */
			};
			uint8_t *p = frame + PROTO_HEADER_BYTES;
			size_t n = (size_t)len - PROTO_HEADER_BYTES;
			struct proto_hello got;

			assert_int_equal(proto_decode_hello(p, n, &got), 0);
			for (size_t i = 0; i < ARRAY_SIZE(patches); i++) {
				uint8_t save[8];

				memcpy(save, p + patches[i].off, patches[i].size);
				if (patches[i].size == 2)
					st16(p + patches[i].off, (uint16_t)patches[i].value);
				else if (patches[i].size == 4)
					st32(p + patches[i].off, (uint32_t)patches[i].value);
				else
					st64(p + patches[i].off, patches[i].value);
				if (proto_decode_hello(p, n, &got) != -EBADMSG)
					fail_msg("HELLO patch %zu accepted", i);
				memcpy(p + patches[i].off, save, patches[i].size);
			}
			assert_int_equal(proto_decode_hello(p, n, &got), 0);
		}
	}
}

static void test_welcome_bounds(void **state)
{
	struct proto_welcome w, got;
	static const struct {
		size_t off, size;
		uint64_t value;
	} patches[] = {
		{ 0, 2, 0 }, /* version 0 */
		{ 0, 2, 3 }, /* chosen above the range */
		{ 2, 2, 0 }, /* range from 0 */
		{ 2, 2, 3 }, /* min > max */
		{ 6, 1, 3 }, /* unknown state */
		{ 6, 1, 0xff },
		{ 7, 1, 1 },  /* reserved */
		{ 40, 8, 5 }, /* resume epoch == epoch */
		{ 40, 8, 0 }, /* cursor without an epoch */
		{ 48, 8, PROTO_BLOCK_COUNT_MAX + 1 },
		{ 48, 8, UINT64_MAX },
	};
	uint8_t *p = frame + PROTO_HEADER_BYTES;

	(void)state;
	memset(&w, 0, sizeof(w));
	w.version = w.version_min = 1;
	w.version_max = 2;
	w.state = PROTO_STATE_SYNCING;
	w.epoch = 5;
	w.resume_epoch = 6;
	w.resume_block = 100;
	assert_int_equal(proto_encode_welcome(&w, frame, sizeof(frame)), PROTO_HEADER_BYTES + 72);
	for (size_t i = 0; i < ARRAY_SIZE(patches); i++) {
		uint8_t save[8];

		memcpy(save, p + patches[i].off, patches[i].size);
		if (patches[i].size == 1)
			p[patches[i].off] = (uint8_t)patches[i].value;
		else if (patches[i].size == 2)
			st16(p + patches[i].off, (uint16_t)patches[i].value);
		else
			st64(p + patches[i].off, patches[i].value);
		if (proto_decode_welcome(p, 72, &got) != -EBADMSG)
			fail_msg("WELCOME patch %zu accepted", i);
		memcpy(p + patches[i].off, save, patches[i].size);
	}
	assert_int_equal(proto_decode_welcome(p, 72, &got), 0);

	/* EMPTY has no epoch and nothing to resume. */
	w.state = PROTO_STATE_EMPTY;
	assert_int_equal(proto_encode_welcome(&w, frame, sizeof(frame)), -EINVAL);
	w.epoch = 0;
	assert_int_equal(proto_encode_welcome(&w, frame, sizeof(frame)), -EINVAL);
	w.resume_epoch = w.resume_block = 0;
	assert_int_equal(proto_encode_welcome(&w, frame, sizeof(frame)), PROTO_HEADER_BYTES + 72);
	st64(p + 24, 1); /* epoch 1 while EMPTY */
	assert_int_equal(proto_decode_welcome(p, 72, &got), -EBADMSG);
	w.state = 3;
	assert_int_equal(proto_encode_welcome(&w, frame, sizeof(frame)), -EINVAL);
}

/* REFUSE and ERROR: codes and messages. */
static void test_messages(void **state)
{
	struct proto_refuse r, rgot;
	struct proto_error e, egot;
	struct proto_msg got;
	uint8_t *p = frame + PROTO_HEADER_BYTES;
	int len;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.reason = PROTO_REFUSE_SPLIT_BRAIN;
	r.version_min = 1;
	r.version_max = 1;
	/* An empty message is fine. */
	len = proto_encode_refuse(&r, frame, sizeof(frame));
	assert_int_equal(len, PROTO_HEADER_BYTES + PROTO_REFUSE_FIXED_BYTES);
	assert_int_equal(proto_decode(frame, (size_t)len, &got), len);
	assert_string_equal(got.u.refuse.message, "");
	/* The longest one. */
	memset(r.message, 'm', PROTO_MESSAGE_BYTES_MAX);
	len = proto_encode_refuse(&r, frame, sizeof(frame));
	assert_int_equal(len,
			 PROTO_HEADER_BYTES + PROTO_REFUSE_FIXED_BYTES + PROTO_MESSAGE_BYTES_MAX);
	assert_int_equal(proto_decode(frame, (size_t)len, &got), len);
	assert_int_equal(strlen(got.u.refuse.message), PROTO_MESSAGE_BYTES_MAX);
	/* One longer (no NUL in the field) cannot be encoded. */
	memset(r.message, 'm', sizeof(r.message));
	assert_int_equal(proto_encode_refuse(&r, frame, sizeof(frame)), -EINVAL);
	/* Control bytes cannot be encoded. */
	strcpy(r.message, "line\nbreak");
	assert_int_equal(proto_encode_refuse(&r, frame, sizeof(frame)), -EINVAL);
	strcpy(r.message, "volume pg-data: generation 4 here, 3 there");
	r.reason = 0;
	assert_int_equal(proto_encode_refuse(&r, frame, sizeof(frame)), -EINVAL);
	r.reason = PROTO_REFUSE_VERSION;
	r.version_min = 0;
	assert_int_equal(proto_encode_refuse(&r, frame, sizeof(frame)), -EINVAL);
	r.version_min = 1;

	len = proto_encode_refuse(&r, frame, sizeof(frame));
	assert_true(len > 0);
	assert_int_equal(proto_decode_refuse(p, (size_t)len - 32, &rgot), 0);
	assert_string_equal(rgot.message, r.message);
	/* An embedded NUL (a non-terminated string's cousin) and a control byte. */
	p[8 + 3] = 0;
	assert_int_equal(proto_decode_refuse(p, (size_t)len - 32, &rgot), -EBADMSG);
	p[8 + 3] = 0x1b;
	assert_int_equal(proto_decode_refuse(p, (size_t)len - 32, &rgot), -EBADMSG);
	p[8 + 3] = 0xff;
	assert_int_equal(proto_decode_refuse(p, (size_t)len - 32, &rgot), -EBADMSG);
	p[8 + 3] = 'u';
	/* message_len against the bytes present */
	st16(p + 2, (uint16_t)(ld16(p + 2) + 1));
	assert_int_equal(proto_decode_refuse(p, (size_t)len - 32, &rgot), -EBADMSG);
	st16(p + 2, (uint16_t)(ld16(p + 2) - 2));
	assert_int_equal(proto_decode_refuse(p, (size_t)len - 32, &rgot), -EBADMSG);
	st16(p + 2, PROTO_MESSAGE_BYTES_MAX + 1);
	memset(p + 8, 'x', PROTO_MESSAGE_BYTES_MAX + 1);
	assert_int_equal(proto_decode_refuse(p, 8 + PROTO_MESSAGE_BYTES_MAX + 1, &rgot), -EBADMSG);
	st16(p + 2, 0xffff);
	assert_int_equal(proto_decode_refuse(p, 8 + PROTO_MESSAGE_BYTES_MAX + 1, &rgot), -EBADMSG);
	/* reason 0 */
	st16(p + 0, 0);
	st16(p + 2, 0);
	assert_int_equal(proto_decode_refuse(p, 8, &rgot), -EBADMSG);
	/* an unknown reason decodes, named "unknown" */
	st16(p + 0, 999);
	assert_int_equal(proto_decode_refuse(p, 8, &rgot), 0);
	assert_string_equal(proto_refuse_name(rgot.reason), "unknown");
	assert_string_equal(proto_refuse_name(PROTO_REFUSE_SPLIT_BRAIN), "SPLIT_BRAIN");
	assert_string_equal(proto_refuse_name(0), "unknown");

	memset(&e, 0, sizeof(e));
	e.code = PROTO_ERR_VERIFY;
	proto_message_format(e.message, "block %u: hash %016x differs", 17u, 0xbeefu);
	len = proto_encode_error(&e, frame, sizeof(frame));
	assert_true(len > 0);
	assert_int_equal(proto_decode(frame, (size_t)len, &got), len);
	assert_int_equal(got.u.error.code, PROTO_ERR_VERIFY);
	assert_string_equal(got.u.error.message, "block 17: hash 000000000000beef differs");
	assert_string_equal(proto_error_name(PROTO_ERR_VERIFY), "VERIFY");
	assert_string_equal(proto_error_name(0), "unknown");
	assert_string_equal(proto_error_name(0xffff), "unknown");
	p[4] = 1; /* reserved */
	assert_int_equal(proto_decode_error(p, (size_t)len - 32, &egot), -EBADMSG);
	p[4] = 0;
	st16(p, 0);
	assert_int_equal(proto_decode_error(p, (size_t)len - 32, &egot), -EBADMSG);
	e.code = 0;
	assert_int_equal(proto_encode_error(&e, frame, sizeof(frame)), -EINVAL);

	/* proto_message_format: truncates and sanitises, so the result always encodes. */
	proto_message_format(e.message, "%s\t%c%c", "path/with\nnewline", 0x7f, (char)0xe9);
	assert_string_equal(e.message, "path/with?newline???");
	{
		char big[1000];

		memset(big, 'b', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		proto_message_format(e.message, "%s", big);
		assert_int_equal(strlen(e.message), PROTO_MESSAGE_BYTES_MAX);
		e.code = PROTO_ERR_IO;
		assert_true(proto_encode_error(&e, frame, sizeof(frame)) > 0);
	}
}

static void test_epoch_frames(void **state)
{
	struct proto_epoch_begin b;
	struct proto_zero z;
	struct proto_epoch_end e;
	struct proto_epoch_ack a;
	struct proto_msg got;
	uint8_t *p = frame + PROTO_HEADER_BYTES;

	(void)state;
#define BEGIN_BAD(...)                                                                     \
	do {                                                                               \
		memset(&b, 0, sizeof(b));                                                  \
		b.epoch = 10;                                                              \
		b.base_epoch = 9;                                                          \
		b.flags = PROTO_EPOCH_CRASH_CONSISTENT;                                    \
		b.block_count = 100;                                                       \
		assert_int_equal(proto_encode_epoch_begin(&b, frame, sizeof(frame)),       \
				 PROTO_HEADER_BYTES + PROTO_EPOCH_BEGIN_V1_BYTES);         \
		__VA_ARGS__;                                                               \
		assert_int_equal(proto_encode_epoch_begin(&b, out, sizeof(out)), -EINVAL); \
	} while (0)
	BEGIN_BAD(b.epoch = 0; b.base_epoch = 0);
	BEGIN_BAD(b.base_epoch = 10);
	BEGIN_BAD(b.base_epoch = 11);
	BEGIN_BAD(b.flags |= 8);
	BEGIN_BAD(b.flags |= 0x80000000u);
	BEGIN_BAD(b.flags |= PROTO_EPOCH_INITIAL_SYNC);
	BEGIN_BAD(b.flags |= PROTO_EPOCH_RESUMED);
	BEGIN_BAD(b.resume_block = 5);
	BEGIN_BAD(b.block_count = PROTO_BLOCK_COUNT_MAX + 1);
	BEGIN_BAD(b.flags |= PROTO_EPOCH_RESUMED; b.resume_block = PROTO_BLOCK_COUNT_MAX + 1);
#undef BEGIN_BAD
	/* and the decoder, on the bytes (flags at 24, reserved at 28) */
	assert_int_equal(
		proto_decode_epoch_begin(p, PROTO_EPOCH_BEGIN_V1_BYTES, &got.u.epoch_begin), 0);
	st32(p + 24, PROTO_EPOCH_CRASH_CONSISTENT | 16);
	assert_int_equal(
		proto_decode_epoch_begin(p, PROTO_EPOCH_BEGIN_V1_BYTES, &got.u.epoch_begin),
		-EBADMSG);
	st32(p + 24, PROTO_EPOCH_CRASH_CONSISTENT);
	st32(p + 28, 1);
	assert_int_equal(
		proto_decode_epoch_begin(p, PROTO_EPOCH_BEGIN_V1_BYTES, &got.u.epoch_begin),
		-EBADMSG);
	st32(p + 28, 0);
	st64(p + 8, 10); /* base == epoch */
	assert_int_equal(
		proto_decode_epoch_begin(p, PROTO_EPOCH_BEGIN_V1_BYTES, &got.u.epoch_begin),
		-EBADMSG);
	/* With a capture time the frame is 56 bytes and carries it; a 48-byte one
	 * (a peer without PROTO_CAP_CAPTURE_TIME) decodes with 0; other sizes fail. */
	memset(&b, 0, sizeof(b));
	b.epoch = 3;
	b.base_epoch = 2;
	b.capture_unix_ms = 1795000000123ull;
	assert_int_equal(proto_encode_epoch_begin(&b, frame, sizeof(frame)),
			 PROTO_HEADER_BYTES + PROTO_EPOCH_BEGIN_BYTES);
	assert_int_equal(proto_decode_epoch_begin(p, PROTO_EPOCH_BEGIN_BYTES, &got.u.epoch_begin),
			 0);
	assert_true(got.u.epoch_begin.capture_unix_ms == 1795000000123ull);
	assert_int_equal(
		proto_decode_epoch_begin(p, PROTO_EPOCH_BEGIN_V1_BYTES, &got.u.epoch_begin), 0);
	assert_true(got.u.epoch_begin.capture_unix_ms == 0);
	memset(p + PROTO_EPOCH_BEGIN_V1_BYTES, 0, 8); /* 56 bytes with 0: not canonical */
	assert_int_equal(proto_decode_epoch_begin(p, PROTO_EPOCH_BEGIN_BYTES, &got.u.epoch_begin),
			 -EBADMSG);
	assert_int_equal(
		proto_decode_epoch_begin(p, PROTO_EPOCH_BEGIN_V1_BYTES + 4, &got.u.epoch_begin),
		-EBADMSG);
	/* A resumed initial sync is fine. */
	memset(&b, 0, sizeof(b));
	b.epoch = 1;
	b.flags = PROTO_EPOCH_INITIAL_SYNC | PROTO_EPOCH_RESUMED | PROTO_EPOCH_CRASH_CONSISTENT;
	b.resume_block = PROTO_BLOCK_COUNT_MAX;
	b.block_count = PROTO_BLOCK_COUNT_MAX;
	assert_true(proto_encode_epoch_begin(&b, frame, sizeof(frame)) > 0);

	/* ZERO */
	z.first_block = 0;
	z.block_count = 0;
	assert_int_equal(proto_encode_zero(&z, frame, sizeof(frame)), -EINVAL);
	z.block_count = PROTO_ZERO_BLOCKS_MAX + 1;
	assert_int_equal(proto_encode_zero(&z, frame, sizeof(frame)), -EINVAL);
	z.block_count = PROTO_ZERO_BLOCKS_MAX;
	z.first_block = PROTO_BLOCK_COUNT_MAX - PROTO_ZERO_BLOCKS_MAX + 1;
	assert_int_equal(proto_encode_zero(&z, frame, sizeof(frame)), -EINVAL);
	z.first_block--;
	assert_int_equal(proto_encode_zero(&z, frame, sizeof(frame)),
			 PROTO_HEADER_BYTES + PROTO_ZERO_BYTES);
	assert_int_equal(proto_decode_zero(p, PROTO_ZERO_BYTES, &got.u.zero), 0);
	st64(p, UINT64_MAX);
	assert_int_equal(proto_decode_zero(p, PROTO_ZERO_BYTES, &got.u.zero), -EBADMSG);
	st64(p, 0);
	st32(p + 8, 0);
	assert_int_equal(proto_decode_zero(p, PROTO_ZERO_BYTES, &got.u.zero), -EBADMSG);
	st32(p + 8, UINT32_MAX);
	assert_int_equal(proto_decode_zero(p, PROTO_ZERO_BYTES, &got.u.zero), -EBADMSG);
	st32(p + 8, 1);
	p[15] = 1; /* reserved */
	assert_int_equal(proto_decode_zero(p, PROTO_ZERO_BYTES, &got.u.zero), -EBADMSG);

	/* EPOCH_END and EPOCH_ACK */
	memset(&e, 0, sizeof(e));
	assert_int_equal(proto_encode_epoch_end(&e, frame, sizeof(frame)), -EINVAL);
	e.epoch = 1;
	e.block_count = PROTO_BLOCK_COUNT_MAX + 1;
	assert_int_equal(proto_encode_epoch_end(&e, frame, sizeof(frame)), -EINVAL);
	e.block_count = PROTO_BLOCK_COUNT_MAX;
	assert_true(proto_encode_epoch_end(&e, frame, sizeof(frame)) > 0);
	st64(p + 8, UINT64_MAX);
	assert_int_equal(proto_decode_epoch_end(p, PROTO_EPOCH_END_BYTES, &got.u.epoch_end),
			 -EBADMSG);
	memset(&a, 0, sizeof(a));
	assert_int_equal(proto_encode_epoch_ack(&a, frame, sizeof(frame)), -EINVAL);
	a.epoch = UINT64_MAX;
	assert_true(proto_encode_epoch_ack(&a, frame, sizeof(frame)) > 0);
	st64(p, 0);
	assert_int_equal(proto_decode_epoch_ack(p, PROTO_EPOCH_ACK_BYTES, &got.u.epoch_ack),
			 -EBADMSG);

	/* KEEPALIVE carries nothing. */
	assert_int_equal(proto_decode_keepalive(p, 0), 0);
	assert_int_equal(proto_decode_keepalive(p, 1), -EBADMSG);
}

/* ROUND: the round's range, its flags, and a capture time exactly when FINAL. */
static void test_round_bounds(void **state)
{
	static const struct {
		uint32_t round, flags;
		uint64_t capture_unix_ms;
		bool valid;
	} cases[] = {
		{ 2, 0, 0, true },
		{ PROTO_ROUNDS_MAX, 0, 0, true },
		{ 2, PROTO_ROUND_FINAL, 1, true },
		{ PROTO_ROUNDS_MAX, PROTO_ROUND_FINAL, UINT64_MAX, true },
		{ 0, 0, 0, false },
		{ 1, 0, 0, false }, /* round 1 starts implicitly after EPOCH_BEGIN */
		{ 1, PROTO_ROUND_FINAL, 1795000000123ull, false },
		{ PROTO_ROUNDS_MAX + 1, 0, 0, false },
		{ PROTO_ROUNDS_MAX + 1, PROTO_ROUND_FINAL, 1795000000123ull, false },
		{ UINT32_MAX, 0, 0, false },
		{ 2, 1u << 1, 0, false }, /* unknown flags */
		{ 2, PROTO_ROUND_FINAL | (1u << 31), 1795000000123ull, false },
		{ 2, 0, 1795000000123ull, false },  /* a capture time without FINAL */
		{ 2, PROTO_ROUND_FINAL, 0, false }, /* FINAL without a capture time */
		/* how the source was captured: a final round's, a known kind */
		{ 2, PROTO_ROUND_FINAL | PROTO_CAPTURE_FREEZE << 8, 7, true },
		{ 3, PROTO_ROUND_FINAL | PROTO_CAPTURE_REFLINK << 8, 7, true },
		{ 2, PROTO_ROUND_FINAL | PROTO_CAPTURE_SNAPSHOT << 8, 7, true },
		{ 2, PROTO_CAPTURE_FREEZE << 8, 0, false }, /* not final */
		{ 2, PROTO_ROUND_FINAL | 1u << 8, 7, false },
		{ 2, PROTO_ROUND_FINAL | 5u << 8, 7, false },
		{ 2, PROTO_ROUND_FINAL | 15u << 8, 7, false },
		{ 2, PROTO_ROUND_FINAL | 1u << 12, 7, false }, /* past the kind's bits */
	};
	uint8_t *p = out + PROTO_HEADER_BYTES;
	struct proto_round m, got;
	struct proto_msg msg;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int len;

		m = (struct proto_round){ .round = cases[i].round,
					  .flags = cases[i].flags,
					  .capture_unix_ms = cases[i].capture_unix_ms };
		/* The payload by hand, decoded bare and behind a signed header. */
		st32(p + 0, cases[i].round);
		st32(p + 4, cases[i].flags);
		st64(p + 8, cases[i].capture_unix_ms);
		len = (int)forge(out, PROTO_ROUND, p, PROTO_ROUND_BYTES);
		if (!cases[i].valid) {
			if (proto_encode_round(&m, frame, sizeof(frame)) != -EINVAL)
				fail_msg("ROUND case %zu encoded", i);
			if (proto_decode_round(p, PROTO_ROUND_BYTES, &got) != -EBADMSG)
				fail_msg("ROUND case %zu decoded", i);
			assert_int_equal(proto_decode(out, (size_t)len, &msg), -EBADMSG);
			continue;
		}
		/* A valid one round-trips byte for byte. */
		assert_int_equal(proto_encode_round(&m, frame, sizeof(frame)),
				 PROTO_HEADER_BYTES + PROTO_ROUND_BYTES);
		assert_int_equal(len, PROTO_HEADER_BYTES + PROTO_ROUND_BYTES);
		assert_memory_equal(frame, out, (size_t)len);
		assert_int_equal(proto_decode(frame, (size_t)len, &msg), len);
		assert_int_equal(msg.header.type, PROTO_ROUND);
		assert_memory_equal(&msg.u.round, &m, sizeof(m));
		assert_int_equal(proto_decode_round(p, PROTO_ROUND_BYTES, &got), 0);
		assert_memory_equal(&got, &m, sizeof(m));
		assert_int_equal(proto_encode_round(&got, out, sizeof(out)), len);
		assert_memory_equal(out, frame, (size_t)len);
		/* and only at its exact size */
		assert_int_equal(
			proto_decode_round(frame + PROTO_HEADER_BYTES, PROTO_ROUND_BYTES - 1, &got),
			-EBADMSG);
		assert_int_equal(proto_encode_round(&m, frame, (size_t)len - 1), -ENOSPC);
	}
	assert_string_equal(proto_type_name(PROTO_ROUND), "ROUND");
}

/* Encoders never write past cap: each buffer is exactly cap bytes (ASan checks). */
static void test_encode_nospace(void **state)
{
	uint64_t rng = test_seed ^ 0x6e6f7370ull;
	struct proto_msg want;

	(void)state;
	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		for (int s = 0; s < 4; s++) {
			uint64_t rng_copy = rng;
			int len = encode_sample(all_types[t], &rng, &want, frame, sizeof(frame));
			size_t step = len > 2000 ? (size_t)len / 500 : 1;

			assert_true(len > 0);
			for (size_t cap = 0; cap < (size_t)len; cap += step) {
				uint8_t *b = malloc(cap > 0 ? cap : 1);
				uint64_t r2 = rng_copy;

				assert_non_null(b);
				assert_int_equal(encode_sample(all_types[t], &r2, &want,
							       cap > 0 ? b : NULL, cap),
						 -ENOSPC);
				free(b);
			}
			{
				uint8_t *b = malloc((size_t)len);
				uint64_t r2 = rng_copy;

				assert_non_null(b);
				assert_int_equal(
					encode_sample(all_types[t], &r2, &want, b, (size_t)len),
					len);
				assert_memory_equal(b, frame, (size_t)len);
				free(b);
			}
		}
	}
}

/* Frames back to back in one buffer decode one after another. */
static void test_stream(void **state)
{
	uint64_t rng = test_seed ^ 0x73747265616dull;
	struct proto_msg want[64], got;
	size_t lens[64], off = 0, n = 0;

	(void)state;
	for (n = 0; n < ARRAY_SIZE(want) && sizeof(frame) - off > (1u << 20); n++) {
		uint16_t type = all_types[below(&rng, ARRAY_SIZE(all_types))];
		int len = encode_sample(type, &rng, &want[n], frame + off, sizeof(frame) - off);

		assert_true(len > 0);
		lens[n] = (size_t)len;
		off += (size_t)len;
		if (type == PROTO_DATA || type == PROTO_PAGES) /* sources reused by the next */
			want[n].header.type = 0;
	}
	off = 0;
	for (size_t i = 0; i < n; i++) {
		int r = proto_decode(frame + off, sizeof(frame) - off, &got);

		assert_int_equal(r, (int)lens[i]);
		if (want[i].header.type != 0)
			assert_same_message(&want[i], &got);
		off += (size_t)r;
	}
}

static void test_version_choose(void **state)
{
	static const struct {
		uint16_t a_min, a_max, b_min, b_max, want;
	} cases[] = {
		{ 1, 1, 1, 1, 1 },
		{ 1, 3, 1, 2, 2 },
		{ 1, 3, 2, 5, 3 },
		{ 2, 5, 1, 3, 3 },
		{ 1, 1, 2, 2, 0 },
		{ 3, 4, 1, 2, 0 },
		{ 0, 0, 0, 0, 0 },
		{ 0, 2, 0, 1, 1 },
		{ 2, 1, 1, 2, 0 }, /* an inverted range meets nothing */
		{ 1, 0xffff, 0xfffe, 0xffff, 0xffff },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		assert_int_equal(proto_version_choose(cases[i].a_min, cases[i].a_max,
						      cases[i].b_min, cases[i].b_max),
				 cases[i].want);
	assert_int_equal(proto_version_choose(PROTO_VERSION_MIN, PROTO_VERSION_MAX,
					      PROTO_VERSION_MIN, PROTO_VERSION_MAX),
			 PROTO_VERSION_MAX);
	for (uint16_t t = 1; t <= PROTO_TYPE_MAX; t++)
		assert_string_not_equal(proto_type_name(t), "unknown");
}

/*
 * The seeded loop: random bytes, random payloads behind forged headers, and
 * mutated valid frames, through every decoder. Nothing may crash; whatever is
 * accepted must be canonical.
 */
static void test_random_bytes(void **state)
{
	uint64_t rng = test_seed ^ 0x72616e646f6dull;
	struct proto_msg msg, got;
	uint64_t accepted = 0;

	(void)state;
	sample_small(true);
	for (int it = 0; it < RANDOM_ITERATIONS; it++) {
		uint16_t type = all_types[below(&rng, ARRAY_SIZE(all_types))];
		size_t n = below(&rng, 600);
		int kind = (int)below(&rng, 4);
		uint8_t *b;
		int r;

		switch (kind) {
		case 0: /* raw random bytes as a frame */
			for (size_t i = 0; i < n; i++)
				frame[i] = (uint8_t)rnd(&rng);
			if (below(&rng, 2) && n >= 4)
				st32(frame, PROTO_MAGIC);
			b = exact_copy(frame, n);
			r = proto_decode(b, n, &got);
			assert_true(r == -EAGAIN || r == -EBADMSG || r > 0);
			if (r > 0) {
				accepted++;
				assert_true((size_t)r <= n);
				assert_canonical_frame(b, r, &got);
			}
			free(b);
			break;
		case 1: /* random payload behind a valid header */
			for (size_t i = 0; i < n; i++)
				frame[PROTO_HEADER_BYTES + i] = (uint8_t)rnd(&rng);
			n = forge(frame, type, frame + PROTO_HEADER_BYTES, n);
			r = proto_decode(frame, n, &got);
			assert_true(r == -EBADMSG || r == (int)n);
			if (r > 0) {
				accepted++;
				assert_canonical_frame(frame, r, &got);
			}
			break;
		case 2: /* random payload straight into the payload decoder */
			for (size_t i = 0; i < n; i++)
				frame[i] = (uint8_t)rnd(&rng);
			b = exact_copy(frame, n);
			r = decode_payload(type, b, n, &got);
			assert_true(r == -EBADMSG || r == 0);
			if (r == 0) {
				accepted++;
				assert_canonical_payload(b, n, &got);
			}
			free(b);
			break;
		default: { /* a valid frame with a few bytes changed, re-signed */
			int len = encode_sample(type, &rng, &msg, frame, sizeof(frame));
			size_t plen = (size_t)len - PROTO_HEADER_BYTES;
			int edits = 1 + (int)below(&rng, 3);

			for (int e = 0; e < edits && plen > 0; e++) {
				size_t at = PROTO_HEADER_BYTES + below(&rng, plen);

				frame[at] = below(&rng, 2)
						    ? (uint8_t)rnd(&rng)
						    : (uint8_t)(frame[at] ^ (1u << below(&rng, 8)));
			}
			if (below(&rng, 8) == 0 && plen > 0)
				plen = below(&rng, plen); /* and cut */
			n = forge(frame, type, frame + PROTO_HEADER_BYTES, plen);
			r = proto_decode(frame, n, &got);
			assert_true(r == -EBADMSG || r == (int)n);
			if (r > 0) {
				accepted++;
				assert_canonical_frame(frame, r, &got);
			}
			b = exact_copy(frame + PROTO_HEADER_BYTES, plen);
			r = decode_payload(type, b, plen, &got);
			assert_true(r == -EBADMSG || r == 0);
			if (r == 0)
				assert_canonical_payload(b, plen, &got);
			free(b);
		}
		}
	}
	printf("test_proto: %d random inputs, %" PRIu64 " accepted (all canonical)\n",
	       RANDOM_ITERATIONS, accepted);
}

static int sample_default(void **state)
{
	(void)state;
	sample_small(false);
	return 0;
}

int main(void)
{
	const char *env = getenv("PVREPL_TEST_SEED");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_round_trips, sample_default),
		cmocka_unit_test_setup(test_layout, sample_default),
		cmocka_unit_test_setup(test_truncations, sample_default),
		cmocka_unit_test_setup(test_forged_truncations, sample_default),
		cmocka_unit_test_setup(test_header_bit_flips, sample_default),
		cmocka_unit_test_setup(test_payload_bit_flips, sample_default),
		cmocka_unit_test_setup(test_header_fields, sample_default),
		cmocka_unit_test_setup(test_data_bounds, sample_default),
		cmocka_unit_test_setup(test_data_max_and_prefix, sample_default),
		cmocka_unit_test_setup(test_pages_bounds, sample_default),
		cmocka_unit_test_setup(test_hello_bounds, sample_default),
		cmocka_unit_test_setup(test_welcome_bounds, sample_default),
		cmocka_unit_test_setup(test_messages, sample_default),
		cmocka_unit_test_setup(test_epoch_frames, sample_default),
		cmocka_unit_test_setup(test_round_bounds, sample_default),
		cmocka_unit_test_setup(test_encode_nospace, sample_default),
		cmocka_unit_test_setup(test_stream, sample_default),
		cmocka_unit_test_setup(test_version_choose, sample_default),
		cmocka_unit_test_setup(test_random_bytes, sample_default),
	};

	test_seed = env != NULL ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	tu_pattern_fill(data_src, sizeof(data_src), 0, test_seed);
	printf("test_proto: seed %" PRIu64 " (replay with PVREPL_TEST_SEED=%" PRIu64 ")\n",
	       test_seed, test_seed);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
