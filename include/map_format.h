/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The on-disk format of a volume's hash map: the files `map` (the base) and
 * `map.log` (epochs committed since the base) in the volume's state directory.
 * docs/FORMATS.md describes the files, their invariants and the commit protocol;
 * replicator/map.c is the only code that reads or writes them.
 *
 * Every integer is little-endian. Every struct here has its size asserted and no
 * implicit padding. Checksums are XXH3-64 with the seed named for their use, so a
 * checksum of one kind never validates another kind of bytes.
 */
#ifndef PVREPL_MAP_FORMAT_H
#define PVREPL_MAP_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define MAP_DISK_VERSION 1u

/* Magics read as ASCII in a hex dump; the \r\n catches text-mode mangling. */
#define MAP_DISK_BASE_MAGIC   0x0a0d50414d525650ull /* "PVRMAP\r\n" */
#define MAP_DISK_LOG_MAGIC    0x0a0d474f4c525650ull /* "PVRLOG\r\n" */
#define MAP_DISK_RECORD_MAGIC 0x0a0d434552525650ull /* "PVRREC\r\n" */

#define MAP_DISK_SEED_BASE_HEADER 0x6d61702d68647201ull
#define MAP_DISK_SEED_BASE_BODY	  0x6d61702d62647902ull
#define MAP_DISK_SEED_LOG_HEADER  0x6d61702d6c676803ull
#define MAP_DISK_SEED_RECORD	  0x6d61702d72656304ull

#define MAP_DISK_VOLUME_ID_BYTES   16u
#define MAP_DISK_VOLUME_NAME_BYTES 64u

/*
 * `map`: this header, then block_count little-endian uint64 block hashes, and
 * nothing else (file size = sizeof header + 8 * block_count).
 */
struct map_disk_header {
	uint64_t magic;		 /* MAP_DISK_BASE_MAGIC */
	uint32_t format_version; /* MAP_DISK_VERSION */
	uint32_t block_bytes;	 /* a power of two */
	uint8_t volume_id[MAP_DISK_VOLUME_ID_BYTES];
	char volume_name[MAP_DISK_VOLUME_NAME_BYTES]; /* NUL-terminated, NUL-padded */
	uint64_t size_bytes;
	uint64_t block_count; /* ceil(size_bytes / block_bytes) */
	uint64_t generation;
	uint64_t epoch;		  /* the epoch this base holds */
	uint64_t body_checksum;	  /* of the hashes, SEED_BASE_BODY */
	uint8_t reserved[112];	  /* zero */
	uint64_t header_checksum; /* of the bytes above, SEED_BASE_HEADER */
};
_Static_assert(sizeof(struct map_disk_header) == 256, "map header size");
_Static_assert(offsetof(struct map_disk_header, header_checksum) == 248, "map header layout");

/*
 * `map.log`: this header, then records. Created whole (write, fsync, rename), so
 * a short or bad header is corruption, not a torn write.
 */
struct map_disk_log_header {
	uint64_t magic;				     /* MAP_DISK_LOG_MAGIC */
	uint32_t format_version;		     /* MAP_DISK_VERSION */
	uint32_t reserved;			     /* zero */
	uint8_t volume_id[MAP_DISK_VOLUME_ID_BYTES]; /* must equal the base's */
	uint64_t checksum;			     /* of the bytes above, SEED_LOG_HEADER */
};
_Static_assert(sizeof(struct map_disk_log_header) == 40, "map.log header size");

/*
 * One record per committed epoch, appended in one write and fdatasync'ed: this
 * header then entry_count entries in ascending block order. checksum covers the
 * header (with checksum = 0) and the entries, SEED_RECORD. Records are multiples
 * of 8 bytes, so every record starts 8-aligned in the file.
 */
struct map_disk_record {
	uint64_t magic; /* MAP_DISK_RECORD_MAGIC */
	uint64_t epoch; /* strictly increasing among records applied */
	uint64_t generation;
	uint64_t entry_count;
	uint64_t checksum;
};
_Static_assert(sizeof(struct map_disk_record) == 40, "map.log record size");

struct map_disk_entry {
	uint64_t block; /* < block_count */
	uint64_t hash;
};
_Static_assert(sizeof(struct map_disk_entry) == 16, "map.log entry size");

#endif
