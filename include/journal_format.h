/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The on-disk format of a volume's epoch journal: the file `journal` in the
 * volume's state directory on the standby side. docs/FORMATS.md describes the
 * layout, the states and the crash analysis; replicator/journal.c is the only
 * code that reads or writes it.
 *
 * Layout: two superblock slots of JOURNAL_DISK_SLOT_BYTES at offsets 0 and 4096,
 * then the record area from JOURNAL_DISK_RECORDS_OFFSET to the end of the
 * (preallocated, fixed-size) file. Every record starts 4 KiB-aligned, so every
 * journal I/O is valid O_DIRECT on any device or file system pvrepl supports.
 *
 * Every integer is little-endian. Every struct here has its size asserted and no
 * implicit padding. Checksums are XXH3-64 with the seed named for their use, so a
 * checksum of one kind never validates another kind of bytes.
 */
#ifndef PVREPL_JOURNAL_FORMAT_H
#define PVREPL_JOURNAL_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define JOURNAL_DISK_VERSION 1u

/* Magics read as ASCII in a hex dump; the \r\n catches text-mode mangling. */
#define JOURNAL_DISK_SUPER_MAGIC  0x0a0d4c4e4a525650ull /* "PVRJNL\r\n" */
#define JOURNAL_DISK_RECORD_MAGIC 0x0a0d43524a525650ull /* "PVRJRC\r\n" */

#define JOURNAL_DISK_SEED_SUPER	 0x6a726e2d73757001ull
#define JOURNAL_DISK_SEED_RECORD 0x6a726e2d72656302ull
#define JOURNAL_DISK_SEED_CHAIN	 0x6a726e2d63686e03ull

#define JOURNAL_DISK_VOLUME_ID_BYTES 16u
/* Alignment of every journal I/O: a multiple of every logical block size. */
#define JOURNAL_DISK_ALIGN_BYTES 4096u
/* Superblock copy k (0 or 1) lives at k * SLOT_BYTES; sequence % 2 picks k. */
#define JOURNAL_DISK_SLOT_BYTES	    4096u
#define JOURNAL_DISK_SLOTS	    2u
#define JOURNAL_DISK_RECORDS_OFFSET (JOURNAL_DISK_SLOTS * JOURNAL_DISK_SLOT_BYTES)

/* Superblock states. */
#define JOURNAL_DISK_STATE_EMPTY     1u /* no epoch to replay (new, or one discarded) */
#define JOURNAL_DISK_STATE_OPEN	     2u /* an epoch is being written; discard at recovery */
#define JOURNAL_DISK_STATE_COMMITTED 3u /* records durable, standby not yet: replay */
#define JOURNAL_DISK_STATE_APPLIED   4u /* the standby holds the epoch, durably */

/* Record types. */
#define JOURNAL_DISK_RECORD_DATA    1u
#define JOURNAL_DISK_RECORD_ZERO    2u
#define JOURNAL_DISK_RECORD_BARRIER 3u /* apply: standby writes before it complete first */

/*
 * The superblock, at the start of a 4096-byte slot whose other bytes are zero.
 * It fits in the first 512-byte sector, so a write torn at any sector boundary
 * leaves the slot wholly old or wholly new; the checksum catches the rest.
 * Each write goes to the slot sequence % 2 with sequence one more than the
 * newest valid copy: the other slot keeps the previous state.
 */
struct journal_disk_super {
	uint64_t magic;		 /* JOURNAL_DISK_SUPER_MAGIC */
	uint32_t format_version; /* JOURNAL_DISK_VERSION */
	uint32_t block_bytes;	 /* a power of two */
	uint8_t volume_id[JOURNAL_DISK_VOLUME_ID_BYTES];
	uint64_t volume_bytes;	/* the replicated volume's size; last block may be short */
	uint64_t journal_bytes; /* the file's size, fixed at creation */
	uint64_t sequence;	/* +1 per superblock write; the newest valid copy wins */
	uint32_t state;		/* JOURNAL_DISK_STATE_* */
	uint32_t reserved0;	/* zero */
	uint64_t epoch;		/* the epoch the records belong to (0: none) */
	uint64_t generation;
	uint64_t base_epoch;
	uint64_t applied_epoch;	   /* the last epoch applied through this journal */
	uint64_t record_count;	   /* COMMITTED/APPLIED: records of epoch */
	uint64_t records_bytes;	   /* COMMITTED/APPLIED: bytes of the record area used */
	uint64_t records_checksum; /* the commit checksum: SEED_CHAIN over the records' checksums */
	uint8_t reserved[128];	   /* zero */
	uint64_t checksum;	   /* of the bytes above, SEED_SUPER */
};
_Static_assert(sizeof(struct journal_disk_super) == 256, "journal superblock size");
_Static_assert(offsetof(struct journal_disk_super, checksum) == 248, "journal superblock layout");
_Static_assert(sizeof(struct journal_disk_super) <= 512, "superblock must fit one sector");

/*
 * A record, 4 KiB-aligned in the record area. A DATA record is this header, then
 * block_count little-endian uint64 xxh3-64 hashes of the blocks' plaintext, zero
 * padding to 4 KiB, then the blocks, each padded with zeros to block_bytes (only
 * the volume's last block can be short), then zero padding to 4 KiB. A ZERO
 * record is the header alone in one 4 KiB unit. A BARRIER record is the header
 * alone in one 4 KiB unit, first_block, block_count and plaintext_bytes 0:
 * the apply waits for every standby write of the records before it before it
 * writes any of the records after it (the rounds of an epoch may write a block
 * twice; the later must win). checksum covers the header with checksum = 0 and
 * the hashes, SEED_RECORD; the hashes cover the data. Every record, a barrier
 * too, is in the commit checksum's chain.
 */
struct journal_disk_record {
	uint64_t magic;		  /* JOURNAL_DISK_RECORD_MAGIC */
	uint32_t type;		  /* JOURNAL_DISK_RECORD_DATA | _ZERO | _BARRIER */
	uint32_t block_count;	  /* >= 1; BARRIER: 0 */
	uint64_t first_block;	  /* first_block + block_count <= the volume's blocks */
	uint64_t epoch;		  /* the superblock's epoch */
	uint64_t record_index;	  /* 0, 1, ... within the epoch */
	uint32_t plaintext_bytes; /* DATA: the run's bytes (short tail included); else 0 */
	uint32_t reserved0;	  /* zero */
	uint64_t reserved1;	  /* zero */
	uint64_t checksum;	  /* header (this field 0) + hashes, SEED_RECORD */
};
_Static_assert(sizeof(struct journal_disk_record) == 64, "journal record header size");
_Static_assert(offsetof(struct journal_disk_record, checksum) == 56, "journal record layout");

#endif
