/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The replication wire format: the frame header, the versions, the frame types
 * and their fixed payload sizes, the limits, and the values of every enumerated
 * field (flags, capabilities, refuse reasons, error codes). docs/PROTOCOL.md
 * describes the layouts, the state machines and the refusals; replicator/proto.c
 * is the only code that encodes or decodes frames, through the API in
 * replicator/proto.h.
 *
 * Every integer on the wire is little-endian. struct proto_header is also the
 * layout of the header on the wire, its size and offsets asserted; the payload
 * layouts are in docs/PROTOCOL.md and the PROTO_*_FIXED_BYTES constants below.
 * Values on the wire are kept: a new type, flag or code gets a new number.
 */
#ifndef PVREPL_PROTO_FORMAT_H
#define PVREPL_PROTO_FORMAT_H

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
	PROTO_PAGES = 11, /* some 4 KiB pages of one block (PROTO_CAP_PAGES) */
	PROTO_ROUND = 12, /* an epoch's next round of frames starts (PROTO_CAP_ROUNDS) */
};
#define PROTO_TYPE_MAX 12u

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
/* PAGES: the unit of a partial block, and the most pages one frame carries. */
#define PROTO_PAGE_BYTES 4096u
#define PROTO_PAGES_MAX	 (PROTO_BLOCK_BYTES_MAX / PROTO_PAGE_BYTES)
/* The most rounds one epoch may have: ROUND frames number 2..PROTO_ROUNDS_MAX. */
#define PROTO_ROUNDS_MAX 64u

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
#define PROTO_PAGES_FIXED_BYTES	   32u
#define PROTO_PAGE_ENTRY_BYTES	   16u /* page index u32, zero u32, xxh3 u64 */
#define PROTO_ROUND_BYTES	   16u

#define PROTO_HELLO_PAYLOAD_MAX \
	(PROTO_HELLO_FIXED_BYTES + PROTO_HISTORY_MAX * PROTO_HISTORY_ENTRY_BYTES)
#define PROTO_DATA_PAYLOAD_MAX \
	(PROTO_DATA_FIXED_BYTES + PROTO_DATA_BLOCKS_MAX * 8u + PROTO_DATA_PLAINTEXT_MAX)
_Static_assert(PROTO_DATA_PAYLOAD_MAX <= PROTO_FRAME_PAYLOAD_MAX, "DATA fits a frame");
_Static_assert(PROTO_BLOCK_BYTES_MAX <= PROTO_DATA_PLAINTEXT_MAX, "a block fits a DATA frame");
#define PROTO_PAGES_PAYLOAD_MAX \
	(PROTO_PAGES_FIXED_BYTES + PROTO_PAGES_MAX * PROTO_PAGE_ENTRY_BYTES + PROTO_BLOCK_BYTES_MAX)
_Static_assert(PROTO_PAGES_PAYLOAD_MAX <= PROTO_FRAME_PAYLOAD_MAX, "PAGES fits a frame");

/* ------------------------------------------------------------ enumerations */

/* Capability bits (HELLO: offered; WELCOME: granted). Unknown bits are ignored. */
#define PROTO_CAP_LZ4	 (1ull << 0)
#define PROTO_CAP_RESUME (1ull << 1)
/* EPOCH_BEGIN may carry capture_unix_ms (56 bytes instead of 48). */
#define PROTO_CAP_CAPTURE_TIME (1ull << 2)
/* Incremental epochs may send PAGES: the changed 4 KiB pages of a block with the
 * block's new hash; the receiver completes the block from its standby. */
#define PROTO_CAP_PAGES (1ull << 3)
/* An incremental epoch may come in rounds: after ROUND the frames start again in
 * ascending block order and may repeat blocks of earlier rounds (the later wins);
 * the final round is read at the capture instant. */
#define PROTO_CAP_ROUNDS (1ull << 4)
/* The final ROUND may name how the source was captured (PROTO_ROUND_CAPTURE_*). */
#define PROTO_CAP_CAPTURE_KIND (1ull << 5)

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

/* ROUND flags: FINAL, and in a final round (PROTO_CAP_CAPTURE_KIND) how the
 * source was captured, in bits 8..11: 0 unsaid, else PROTO_CAPTURE_*. */
#define PROTO_ROUND_FINAL	   (1u << 0)
#define PROTO_ROUND_CAPTURE_SHIFT  8u
#define PROTO_ROUND_CAPTURE_MASK   (0xfu << PROTO_ROUND_CAPTURE_SHIFT)
#define PROTO_ROUND_FLAGS_KNOWN	   (PROTO_ROUND_FINAL | PROTO_ROUND_CAPTURE_MASK)
#define PROTO_CAPTURE_FREEZE	   2u
#define PROTO_CAPTURE_REFLINK	   3u
#define PROTO_CAPTURE_SNAPSHOT	   4u
#define PROTO_ROUND_CAPTURE(flags) (((flags)&PROTO_ROUND_CAPTURE_MASK) >> PROTO_ROUND_CAPTURE_SHIFT)

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
	/* PAGES and the standby's other pages do not make the block's hash: the
	 * source changed outside the pages sent (a write its tracker missed). */
	PROTO_ERR_PAGES = 8,
	/* The epoch does not fit the receiver's journal: retrying cannot help
	 * until the journal is made larger (the message says how large). */
	PROTO_ERR_JOURNAL_FULL = 9,
};

#endif
