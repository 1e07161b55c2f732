/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto — pure encoders and decoders of replication frames, and the message
 * structs they fill. docs/PROTOCOL.md is the contract (layouts, state machines,
 * refusals); include/proto_format.h holds the wire format itself (magic,
 * versions, limits, the header layout, frame types, flags, capabilities, refuse
 * reasons, error codes, fixed payload sizes), and this header is its C API.
 *
 * Encoders take a message struct and write one complete frame (header + payload)
 * into a caller buffer; decoders take bytes and fill a struct. Nothing here does
 * I/O, allocates, prints or keeps state, so everything is callable from any thread
 * and fuzzable. Bytes are untrusted: every malformed, truncated, oversized or
 * non-canonical input is -EBADMSG (or -EAGAIN when a frame is merely incomplete),
 * never an assert. Decoders check what a frame can say about itself (bounds,
 * consistency of its own fields); whether a frame fits the volume, the epoch or
 * the state is the sender's and receiver's job.
 */
#ifndef PVREPL_PROTO_H
#define PVREPL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto_format.h"

/* --------------------------------------------------------------- messages */

struct proto_generation {
	uint64_t generation;
	uint64_t start_epoch; /* the last epoch inherited from the previous generation */
};

struct proto_hello {
	uint16_t version_min;
	uint16_t version_max;
	uint64_t capabilities;
	uint8_t volume_id[PROTO_VOLUME_ID_BYTES];
	char volume_name[PROTO_VOLUME_NAME_BYTES]; /* NUL-terminated, 1..63 printable */
	uint64_t size_bytes;
	uint32_t block_bytes;
	uint64_t generation;
	uint64_t epoch; /* confirmed by this receiver; 0: none */
	uint64_t merkle_root;
	uint32_t history_count; /* 1..PROTO_HISTORY_MAX; oldest first */
	struct proto_generation history[PROTO_HISTORY_MAX];
};

struct proto_welcome {
	uint16_t version; /* chosen */
	uint16_t version_min;
	uint16_t version_max;
	uint8_t state; /* enum proto_state */
	uint64_t capabilities;
	uint64_t generation;
	uint64_t epoch;
	uint64_t merkle_root;
	uint64_t resume_epoch;
	uint64_t resume_block;
	uint8_t volume_id[PROTO_VOLUME_ID_BYTES];
};

struct proto_refuse {
	uint16_t reason; /* enum proto_refuse_reason; unknown non-zero values decode */
	uint16_t version_min;
	uint16_t version_max;
	char message[PROTO_MESSAGE_BYTES_MAX + 1]; /* NUL-terminated, printable */
};

struct proto_epoch_begin {
	uint64_t epoch;
	uint64_t base_epoch;
	uint64_t generation;
	uint32_t flags; /* PROTO_EPOCH_* */
	uint64_t block_count;
	uint64_t resume_block;
	/* Source wall-clock time (Unix ms) when the epoch's reads began: the point
	 * in time the standby holds once the epoch commits. 0: unknown, and the
	 * frame is encoded without it (48 bytes), as a peer without
	 * PROTO_CAP_CAPTURE_TIME expects. */
	uint64_t capture_unix_ms;
	/* Not on the wire in EPOCH_BEGIN: the receiver sets it, with the instant,
	 * from the final ROUND (PROTO_CAPTURE_*, 0 unsaid). */
	uint8_t capture_kind;
};

/*
 * A data run: the wire form of a struct scan_batch with zero == false
 * (first_block, block_count, codec, hashes, data, data_bytes; plaintext_bytes is
 * the batch's payload_bytes).
 *
 * Encoders read hashes (block_count values in host order, owned by the caller)
 * and data. Decoders set hashes to NULL and hashes_le to the little-endian array
 * in the frame (8 * block_count bytes, not necessarily aligned: read it with
 * proto_data_hash), and data to the codec output in the frame. Both pointers are
 * into the decoded buffer and valid as long as it is.
 */
struct proto_data {
	uint64_t first_block;
	uint32_t block_count;
	uint16_t codec; /* enum proto_codec */
	uint32_t plaintext_bytes;
	const uint64_t *hashes;	  /* encode */
	const uint8_t *hashes_le; /* decode */
	const uint8_t *data;
	uint32_t data_bytes;
};

/*
 * Some 4 KiB pages of one block (PROTO_CAP_PAGES): the pages that changed, each
 * with its xxh3, and the xxh3 of the whole block once they replace its pages on
 * the standby. Pages are in ascending index order; every page is
 * PROTO_PAGE_BYTES but the volume's very last, which may be short. Encoders read
 * page_index and page_hashes (host order, page_count each, the caller's);
 * decoders set entries_le to the little-endian entries in the frame (read them
 * with proto_pages_index and proto_pages_hash) and data into the frame.
 */
struct proto_pages {
	uint64_t block;
	uint64_t block_hash;
	uint16_t codec; /* enum proto_codec, over the pages' bytes in order */
	uint32_t page_count;
	uint32_t plaintext_bytes;
	const uint32_t *page_index; /* encode */
	const uint64_t *page_hashes;
	const uint8_t *entries_le; /* decode */
	const uint8_t *data;
	uint32_t data_bytes;
};

struct proto_zero {
	uint64_t first_block;
	uint32_t block_count;
};

/*
 * An epoch's next round starts (PROTO_CAP_ROUNDS): the frames after it start
 * again in ascending block order and may repeat blocks of earlier rounds.
 * Round 1 starts implicitly after EPOCH_BEGIN, so the first ROUND of an epoch
 * says 2.
 */
struct proto_round {
	uint32_t round;		  /* the round that starts: 2..PROTO_ROUNDS_MAX */
	uint32_t flags;		  /* PROTO_ROUND_* */
	uint64_t capture_unix_ms; /* FINAL: the capture instant (Unix ms), != 0; else 0 */
};

struct proto_epoch_end {
	uint64_t epoch;
	uint64_t block_count;
	uint64_t merkle_root;
};

struct proto_epoch_ack {
	uint64_t epoch;
	uint64_t generation;
	uint64_t merkle_root;
};

struct proto_error {
	uint16_t code; /* enum proto_error_code; unknown non-zero values decode */
	char message[PROTO_MESSAGE_BYTES_MAX + 1];
};

/* Any decoded frame: type selects the member (KEEPALIVE has none). */
struct proto_msg {
	struct proto_header header;
	union {
		struct proto_hello hello;
		struct proto_welcome welcome;
		struct proto_refuse refuse;
		struct proto_epoch_begin epoch_begin;
		struct proto_data data;
		struct proto_zero zero;
		struct proto_epoch_end epoch_end;
		struct proto_epoch_ack epoch_ack;
		struct proto_error error;
		struct proto_pages pages;
		struct proto_round round;
	} u;
};

/* ----------------------------------------------------------------- frames */

/*
 * Decodes and checks the 32-byte header at buf: magic, header checksum, version
 * (handshake types: PROTO_VERSION_HANDSHAKE), type, flags, and payload_bytes
 * within the type's bounds. Returns 0; -EAGAIN when len < PROTO_HEADER_BYTES;
 * -EBADMSG otherwise. The payload is not looked at.
 */
int proto_decode_header(const uint8_t *buf, size_t len, struct proto_header *h);

/* 0 when len == h->payload_bytes and the payload checksum matches; else -EBADMSG. */
int proto_check_payload(const struct proto_header *h, const uint8_t *payload, size_t len);

/*
 * Decodes the whole frame at the start of buf into msg: header, payload checksum
 * and payload. Returns the frame's length in bytes (the caller consumes that
 * many), -EAGAIN when buf holds less than one frame (read more: when the header is
 * complete, PROTO_HEADER_BYTES + payload_bytes are needed), or -EBADMSG. DATA's
 * pointers are into buf.
 */
int proto_decode(const uint8_t *buf, size_t len, struct proto_msg *msg);

/* Highest version in both ranges, or 0 when they do not meet (REFUSE VERSION). */
uint16_t proto_version_choose(uint16_t a_min, uint16_t a_max, uint16_t b_min, uint16_t b_max);

/* Static names for logs: "HELLO", "VERSION", "VERIFY"...; "unknown" otherwise. */
const char *proto_type_name(uint16_t type);
const char *proto_refuse_name(uint16_t reason);
const char *proto_error_name(uint16_t code);

/*
 * Formats a REFUSE or ERROR message into dst (PROTO_MESSAGE_BYTES_MAX + 1 bytes):
 * truncated to PROTO_MESSAGE_BYTES_MAX, every byte outside 0x20..0x7e replaced by
 * '?', so the result always encodes.
 */
__attribute__((format(printf, 2, 3))) void
proto_message_format(char dst[PROTO_MESSAGE_BYTES_MAX + 1], const char *fmt, ...);

/* ------------------------------------------------------ encode and decode */

/*
 * proto_encode_<type> writes one complete frame for *m into buf and returns its
 * length (PROTO_HEADER_BYTES + payload), -ENOSPC when cap is too small (nothing
 * useful is in buf then), or -EINVAL when *m breaks a rule the decoder enforces
 * (so nothing encoded is ever refused by a decoder for its shape). Handshake
 * frames carry PROTO_VERSION_HANDSHAKE, others PROTO_VERSION_MAX (the only
 * version this code speaks; with a second one they gain a version argument).
 *
 * proto_decode_<type> decodes a payload whose header proto_decode_header accepted
 * (and proto_check_payload checked) into *m. Returns 0 or -EBADMSG: truncated,
 * trailing bytes, a field out of bounds, a non-zero reserved field, an
 * inconsistent count or length. *m is unspecified after an error.
 */
int proto_encode_hello(const struct proto_hello *m, uint8_t *buf, size_t cap);
int proto_decode_hello(const uint8_t *payload, size_t len, struct proto_hello *m);

int proto_encode_welcome(const struct proto_welcome *m, uint8_t *buf, size_t cap);
int proto_decode_welcome(const uint8_t *payload, size_t len, struct proto_welcome *m);

int proto_encode_refuse(const struct proto_refuse *m, uint8_t *buf, size_t cap);
int proto_decode_refuse(const uint8_t *payload, size_t len, struct proto_refuse *m);

int proto_encode_epoch_begin(const struct proto_epoch_begin *m, uint8_t *buf, size_t cap);
int proto_decode_epoch_begin(const uint8_t *payload, size_t len, struct proto_epoch_begin *m);

int proto_encode_data(const struct proto_data *m, uint8_t *buf, size_t cap);
/*
 * Zero-copy DATA: writes the header, the fixed part and the hashes (the frame up
 * to the data) and returns that length; the caller sends m->data (data_bytes,
 * unchanged) right after it. The payload checksum covers the data in place.
 */
int proto_encode_data_prefix(const struct proto_data *m, uint8_t *buf, size_t cap);
int proto_decode_data(const uint8_t *payload, size_t len, struct proto_data *m);
/* Hash i (< block_count) of a decoded (hashes_le) or to-be-encoded (hashes) run. */
uint64_t proto_data_hash(const struct proto_data *m, uint32_t i);

/* PAGES, zero-copy as DATA: the prefix, then m->data sent right after it. */
int proto_encode_pages(const struct proto_pages *m, uint8_t *buf, size_t cap);
int proto_encode_pages_prefix(const struct proto_pages *m, uint8_t *buf, size_t cap);
int proto_decode_pages(const uint8_t *payload, size_t len, struct proto_pages *m);
uint32_t proto_pages_index(const struct proto_pages *m, uint32_t i);
uint64_t proto_pages_hash(const struct proto_pages *m, uint32_t i);

int proto_encode_zero(const struct proto_zero *m, uint8_t *buf, size_t cap);
int proto_decode_zero(const uint8_t *payload, size_t len, struct proto_zero *m);

int proto_encode_round(const struct proto_round *m, uint8_t *buf, size_t cap);
int proto_decode_round(const uint8_t *payload, size_t len, struct proto_round *m);

int proto_encode_epoch_end(const struct proto_epoch_end *m, uint8_t *buf, size_t cap);
int proto_decode_epoch_end(const uint8_t *payload, size_t len, struct proto_epoch_end *m);

int proto_encode_epoch_ack(const struct proto_epoch_ack *m, uint8_t *buf, size_t cap);
int proto_decode_epoch_ack(const uint8_t *payload, size_t len, struct proto_epoch_ack *m);

int proto_encode_keepalive(uint8_t *buf, size_t cap);
int proto_decode_keepalive(const uint8_t *payload, size_t len);

int proto_encode_error(const struct proto_error *m, uint8_t *buf, size_t cap);
int proto_decode_error(const uint8_t *payload, size_t len, struct proto_error *m);

#endif
