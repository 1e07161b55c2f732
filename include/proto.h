/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto — the replication wire format: frames, messages, their limits, and pure
 * encoders and decoders for them. docs/PROTOCOL.md is the contract (layouts,
 * state machines, refusals); this header is its C form.
 *
 * Encoders take a message struct and write one complete frame (header + payload)
 * into a caller buffer; decoders take bytes and fill a struct. Nothing here does
 * I/O, allocates, prints or keeps state, so everything is callable from any thread
 * and fuzzable. Bytes are untrusted: every malformed, truncated, oversized or
 * non-canonical input is -EBADMSG (or -EAGAIN when a frame is merely incomplete),
 * never an assert. Decoders check what a frame can say about itself (bounds,
 * consistency of its own fields); whether a frame fits the volume, the epoch or
 * the state is the sender's and receiver's job.
 *
 * Every integer on the wire is little-endian. struct proto_header is also the
 * layout of the header on the wire; the payload layouts are in docs/PROTOCOL.md
 * and the PROTO_*_FIXED_BYTES constants below.
 */
#ifndef PVREPL_PROTO_H
#define PVREPL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ frame */

#define PROTO_MAGIC 0x50525650u /* the bytes "PVRP" */
/* HELLO, WELCOME and REFUSE always use this version; their layouts are frozen. */
#define PROTO_VERSION_HANDSHAKE 1u
#define PROTO_VERSION_MIN	1u /* the versions this code speaks */
#define PROTO_VERSION_MAX	1u

#define PROTO_HEADER_BYTES	32u
#define PROTO_FRAME_PAYLOAD_MAX (8u << 20)
#define PROTO_FRAME_BYTES_MAX	(PROTO_HEADER_BYTES + PROTO_FRAME_PAYLOAD_MAX)
/* No frame flag is defined in version 1: flags must be 0. */
#define PROTO_FRAME_FLAGS_KNOWN 0u

/* XXH3-64 seeds: a header checksum never validates a payload and vice versa. */
#define PROTO_SEED_HEADER  0x7076727068647201ull
#define PROTO_SEED_PAYLOAD 0x707672706c6f6402ull

/* Frame header, exactly as on the wire (little-endian). */
struct proto_header {
	uint32_t magic;		   /* PROTO_MAGIC */
	uint16_t version;	   /* payload layout version */
	uint16_t type;		   /* enum proto_type */
	uint32_t flags;		   /* 0 */
	uint32_t payload_bytes;	   /* <= PROTO_FRAME_PAYLOAD_MAX, within the type's bounds */
	uint64_t payload_checksum; /* XXH3-64 of the payload, PROTO_SEED_PAYLOAD */
	uint64_t header_checksum;  /* XXH3-64 of bytes 0..23, PROTO_SEED_HEADER */
};
_Static_assert(sizeof(struct proto_header) == PROTO_HEADER_BYTES, "proto header size");
_Static_assert(offsetof(struct proto_header, payload_checksum) == 16, "proto header layout");
_Static_assert(offsetof(struct proto_header, header_checksum) == 24, "proto header layout");

/* On the wire: keep the values; new types get new numbers. */
enum proto_type {
	PROTO_HELLO = 1,
	PROTO_WELCOME = 2,
	PROTO_REFUSE = 3,
	PROTO_EPOCH_BEGIN = 4,
	PROTO_DATA = 5,
	PROTO_ZERO = 6,
	PROTO_EPOCH_END = 7,
	PROTO_EPOCH_ACK = 8,
	PROTO_KEEPALIVE = 9,
	PROTO_ERROR = 10,
};
#define PROTO_TYPE_MAX 10u

/* ----------------------------------------------------------------- limits */

#define PROTO_BLOCK_BYTES_MIN	    512u
#define PROTO_BLOCK_BYTES_MAX	    (4u << 20)
#define PROTO_BLOCK_COUNT_MAX	    (1ull << 32) /* blocks per volume, as map and merkle */
#define PROTO_DATA_PLAINTEXT_MAX    (4u << 20)	 /* plaintext bytes per DATA frame */
#define PROTO_DATA_BLOCKS_MAX	    (PROTO_DATA_PLAINTEXT_MAX / PROTO_BLOCK_BYTES_MIN)
#define PROTO_ZERO_BLOCKS_MAX	    (1u << 24)
#define PROTO_HISTORY_MAX	    16u
#define PROTO_VOLUME_ID_BYTES	    16u
#define PROTO_VOLUME_NAME_BYTES	    64u	 /* on the wire and in structs, NUL included */
#define PROTO_MESSAGE_BYTES_MAX	    256u /* without NUL */
#define PROTO_EPOCHS_IN_FLIGHT_MAX  1u
#define PROTO_KEEPALIVE_INTERVAL_MS 5000u
#define PROTO_PEER_TIMEOUT_MS	    30000u
#define PROTO_CURSOR_SYNC_BYTES	    (64u << 20)

/* Fixed payload parts; see docs/PROTOCOL.md for the offsets. */
#define PROTO_HELLO_FIXED_BYTES	  136u
#define PROTO_HISTORY_ENTRY_BYTES 16u
#define PROTO_WELCOME_BYTES	  72u
#define PROTO_REFUSE_FIXED_BYTES  8u
#define PROTO_EPOCH_BEGIN_BYTES	  56u
/* EPOCH_BEGIN without capture_unix_ms: to and from a peer that did not grant
 * PROTO_CAP_CAPTURE_TIME. */
#define PROTO_EPOCH_BEGIN_V1_BYTES 48u
#define PROTO_DATA_FIXED_BYTES	   24u
#define PROTO_ZERO_BYTES	   16u
#define PROTO_EPOCH_END_BYTES	   24u
#define PROTO_EPOCH_ACK_BYTES	   24u
#define PROTO_ERROR_FIXED_BYTES	   8u

#define PROTO_HELLO_PAYLOAD_MAX \
	(PROTO_HELLO_FIXED_BYTES + PROTO_HISTORY_MAX * PROTO_HISTORY_ENTRY_BYTES)
#define PROTO_DATA_PAYLOAD_MAX \
	(PROTO_DATA_FIXED_BYTES + PROTO_DATA_BLOCKS_MAX * 8u + PROTO_DATA_PLAINTEXT_MAX)
_Static_assert(PROTO_DATA_PAYLOAD_MAX <= PROTO_FRAME_PAYLOAD_MAX, "DATA fits a frame");
_Static_assert(PROTO_BLOCK_BYTES_MAX <= PROTO_DATA_PLAINTEXT_MAX, "a block fits a DATA frame");

/* ------------------------------------------------------------ enumerations */

/* Capability bits (HELLO: offered; WELCOME: granted). Unknown bits are ignored. */
#define PROTO_CAP_LZ4	 (1ull << 0)
#define PROTO_CAP_RESUME (1ull << 1)
/* EPOCH_BEGIN may carry capture_unix_ms (56 bytes instead of 48). */
#define PROTO_CAP_CAPTURE_TIME (1ull << 2)

/* On the wire: the values of codec.h's enum codec_kind (checked in proto.c). */
enum proto_codec {
	PROTO_CODEC_RAW = 0,
	PROTO_CODEC_LZ4 = 1,
};

enum proto_state {
	PROTO_STATE_EMPTY = 0,
	PROTO_STATE_SYNCING = 1,
	PROTO_STATE_CONSISTENT = 2,
};

#define PROTO_EPOCH_INITIAL_SYNC     (1u << 0)
#define PROTO_EPOCH_CRASH_CONSISTENT (1u << 1)
#define PROTO_EPOCH_RESUMED	     (1u << 2)
#define PROTO_EPOCH_FLAGS_KNOWN \
	(PROTO_EPOCH_INITIAL_SYNC | PROTO_EPOCH_CRASH_CONSISTENT | PROTO_EPOCH_RESUMED)

enum proto_refuse_reason {
	PROTO_REFUSE_VERSION = 1,
	PROTO_REFUSE_VOLUME_ID = 2,
	PROTO_REFUSE_SIZE = 3,
	PROTO_REFUSE_BLOCK_SIZE = 4,
	PROTO_REFUSE_GENERATION = 5,
	PROTO_REFUSE_CERTIFICATE = 6,
	PROTO_REFUSE_SPLIT_BRAIN = 7,
	PROTO_REFUSE_BUSY = 8,
};

enum proto_error_code {
	PROTO_ERR_PROTOCOL = 1,
	PROTO_ERR_VERIFY = 2,
	PROTO_ERR_IO = 3,
	PROTO_ERR_EPOCH = 4,
	PROTO_ERR_SHUTDOWN = 5,
	PROTO_ERR_INTERNAL = 6,
	PROTO_ERR_TIMEOUT = 7,
};

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

struct proto_zero {
	uint64_t first_block;
	uint32_t block_count;
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

int proto_encode_zero(const struct proto_zero *m, uint8_t *buf, size_t cap);
int proto_decode_zero(const uint8_t *payload, size_t len, struct proto_zero *m);

int proto_encode_epoch_end(const struct proto_epoch_end *m, uint8_t *buf, size_t cap);
int proto_decode_epoch_end(const uint8_t *payload, size_t len, struct proto_epoch_end *m);

int proto_encode_epoch_ack(const struct proto_epoch_ack *m, uint8_t *buf, size_t cap);
int proto_decode_epoch_ack(const uint8_t *payload, size_t len, struct proto_epoch_ack *m);

int proto_encode_keepalive(uint8_t *buf, size_t cap);
int proto_decode_keepalive(const uint8_t *payload, size_t len);

int proto_encode_error(const struct proto_error *m, uint8_t *buf, size_t cap);
int proto_decode_error(const uint8_t *payload, size_t len, struct proto_error *m);

#endif
