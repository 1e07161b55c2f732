// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for proto's decoders: `make fuzz` builds and runs it (the
 * input layout is in fuzz.h, the seeds come from corpus-gen.c).
 *
 * Checksums would stop almost every random input at the header, so the first
 * input byte picks a mode: the whole input as a stream of frames (proto_decode,
 * checksums and all); or the rest as the payload of one type, either straight
 * into its payload decoder or behind a header this target signs, so the fuzzer
 * reaches every field check. Whatever is accepted must re-encode to the same
 * bytes (decoding is canonical); anything else is a crash on purpose.
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "delta.h"
#include "fuzz.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t frame[PROTO_FRAME_BYTES_MAX];
static uint8_t again[PROTO_FRAME_BYTES_MAX];
static uint64_t hashes[PROTO_DATA_BLOCKS_MAX];
static uint32_t pages_idx[PROTO_PAGES_MAX];

static int reencode(const struct proto_msg *m, uint8_t *buf, size_t cap)
{
	struct proto_data d;
	struct proto_pages pg;

	switch (m->header.type) {
	case PROTO_HELLO:
		return proto_encode_hello(&m->u.hello, buf, cap);
	case PROTO_WELCOME:
		return proto_encode_welcome(&m->u.welcome, buf, cap);
	case PROTO_REFUSE:
		return proto_encode_refuse(&m->u.refuse, buf, cap);
	case PROTO_EPOCH_BEGIN:
		return proto_encode_epoch_begin(&m->u.epoch_begin, buf, cap);
	case PROTO_DATA:
		d = m->u.data;
		for (uint32_t i = 0; i < d.block_count; i++)
			hashes[i] = proto_data_hash(&m->u.data, i);
		d.hashes = hashes;
		return proto_encode_data(&d, buf, cap);
	case PROTO_ZERO:
		return proto_encode_zero(&m->u.zero, buf, cap);
	case PROTO_EPOCH_END:
		return proto_encode_epoch_end(&m->u.epoch_end, buf, cap);
	case PROTO_EPOCH_ACK:
		return proto_encode_epoch_ack(&m->u.epoch_ack, buf, cap);
	case PROTO_KEEPALIVE:
		return proto_encode_keepalive(buf, cap);
	case PROTO_ERROR:
		return proto_encode_error(&m->u.error, buf, cap);
	case PROTO_PAGES:
		pg = m->u.pages;
		for (uint32_t i = 0; i < pg.page_count; i++) {
			pages_idx[i] = proto_pages_index(&m->u.pages, i);
			hashes[i] = proto_pages_hash(&m->u.pages, i);
		}
		pg.page_index = pages_idx;
		pg.page_hashes = hashes;
		return proto_encode_pages(&pg, buf, cap);
	case PROTO_ROUND:
		return proto_encode_round(&m->u.round, buf, cap);
	}
	abort();
}

static int decode_payload(uint16_t type, const uint8_t *p, size_t n, struct proto_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->header.type = type;
	switch (type) {
	case PROTO_HELLO:
		return proto_decode_hello(p, n, &m->u.hello);
	case PROTO_WELCOME:
		return proto_decode_welcome(p, n, &m->u.welcome);
	case PROTO_REFUSE:
		return proto_decode_refuse(p, n, &m->u.refuse);
	case PROTO_EPOCH_BEGIN:
		return proto_decode_epoch_begin(p, n, &m->u.epoch_begin);
	case PROTO_DATA:
		return proto_decode_data(p, n, &m->u.data);
	case PROTO_ZERO:
		return proto_decode_zero(p, n, &m->u.zero);
	case PROTO_EPOCH_END:
		return proto_decode_epoch_end(p, n, &m->u.epoch_end);
	case PROTO_EPOCH_ACK:
		return proto_decode_epoch_ack(p, n, &m->u.epoch_ack);
	case PROTO_KEEPALIVE:
		return proto_decode_keepalive(p, n);
	case PROTO_ERROR:
		return proto_decode_error(p, n, &m->u.error);
	case PROTO_PAGES:
		return proto_decode_pages(p, n, &m->u.pages);
	case PROTO_ROUND:
		return proto_decode_round(p, n, &m->u.round);
	}
	return -EBADMSG;
}

/* Frames back to back, as a receiver's read buffer would hold them. */
static void fuzz_stream(const uint8_t *data, size_t size)
{
	struct proto_msg m;

	for (;;) {
		int r = proto_decode(data, size, &m);

		fuzz_check(r == -EAGAIN || r == -EBADMSG || r > 0);
		if (r <= 0)
			return;
		fuzz_check((size_t)r <= size);
		fuzz_check(reencode(&m, again, sizeof(again)) == r);
		fuzz_check(memcmp(again, data, (size_t)r) == 0);
		data += r;
		size -= (size_t)r;
	}
}

/* One payload of type, bare and behind a signed header. */
static void fuzz_payload(uint16_t type, const uint8_t *p, size_t n)
{
	struct proto_msg m;
	int r;

	r = decode_payload(type, p, n, &m);
	fuzz_check(r == 0 || r == -EBADMSG);
	if (r == 0) {
		fuzz_check(reencode(&m, again, sizeof(again)) == (int)(PROTO_HEADER_BYTES + n));
		fuzz_check(memcmp(again + PROTO_HEADER_BYTES, p, n) == 0);
	}
	if (n > PROTO_FRAME_PAYLOAD_MAX)
		return;
	memcpy(frame + PROTO_HEADER_BYTES, p, n);
	{
		uint32_t magic = htole32(PROTO_MAGIC), len = htole32((uint32_t)n), flags = 0;
		uint16_t version = htole16(PROTO_VERSION_MAX), t = htole16(type);
		uint64_t sum = htole64(delta_hash_seeded(p, n, PROTO_SEED_PAYLOAD));

		memcpy(frame + 0, &magic, 4);
		memcpy(frame + 4, &version, 2);
		memcpy(frame + 6, &t, 2);
		memcpy(frame + 8, &flags, 4);
		memcpy(frame + 12, &len, 4);
		memcpy(frame + 16, &sum, 8);
		sum = htole64(delta_hash_seeded(frame, 24, PROTO_SEED_HEADER));
		memcpy(frame + 24, &sum, 8);
	}
	r = proto_decode(frame, PROTO_HEADER_BYTES + n, &m);
	fuzz_check(r == -EBADMSG || r == (int)(PROTO_HEADER_BYTES + n));
	if (r > 0) {
		fuzz_check(reencode(&m, again, sizeof(again)) == r);
		fuzz_check(memcmp(again, frame, (size_t)r) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t mode;

	if (size == 0)
		return 0;
	mode = data[0];
	if (mode < FUZZ_PROTO_MODE_PAYLOAD) {
		fuzz_stream(data + 1, size - 1);
		return 0;
	}
	/* The type from the mode byte: 1..PROTO_TYPE_MAX, plus a few unknown ones. */
	fuzz_payload((uint16_t)(mode % FUZZ_PROTO_TYPES), data + 1, size - 1);
	return 0;
}
