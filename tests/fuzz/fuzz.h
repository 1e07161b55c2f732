/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The input layouts of the fuzz targets, shared by the targets and by
 * corpus-gen.c, which writes their seeds from the real encoders (`make fuzz`
 * runs it before the fuzzers; no binary seed is committed).
 *
 * fuzz_proto: byte 0 is the mode. Below FUZZ_PROTO_MODE_PAYLOAD the rest is a
 * stream of frames; from it on, the rest is the payload of the message type
 * mode % FUZZ_PROTO_TYPES (1..PROTO_TYPE_MAX, and unknown ones).
 *
 * fuzz_map: byte 0 holds FUZZ_MAP_* flags, bytes 1-2 the length of the `map`
 * file (little-endian, cut to what the input holds), then that file, then the
 * `map.log` file (none with FUZZ_MAP_NO_LOG). The FIX flags make the target
 * recompute a checksum after the fuzzer changed the bytes, so mutations reach
 * the checks behind it.
 *
 * fuzz_journal: byte 0 holds FUZZ_JOURNAL_* flags, then the two superblocks
 * (FUZZ_JOURNAL_SUPER_BYTES each, the rest of each 4 KiB slot is zero), then the
 * record area (zero-padded to 4 KiB units, at least two; at most
 * FUZZ_JOURNAL_AREA_MAX). The journal is that file, over a standby and a config
 * both sides get from fuzz_journal_config.
 *
 * fuzz_vstate, fuzz_pending, fuzz_status: byte 0 holds the target's FIX flags
 * (and a few more bits, below), the rest is the file (`state`, `map.pending`,
 * `status`), cut to FUZZ_RECORD_FILE_MAX. A FIX flag makes the target recompute a
 * checksum (or a count) after the fuzzer changed the bytes. fuzz_pending applies
 * the file to the map of fuzz_pending_map (FUZZ_PENDING_BLOCKS blocks confirmed at
 * epoch FUZZ_PENDING_EPOCH - 1), or with FUZZ_PENDING_FIT_MAP to one made to fit
 * the header, so that mutated headers still reach the body.
 *
 * fuzz_config: byte 0 holds FUZZ_CONFIG_* bits, bytes 1-2 the length of the
 * configuration file (little-endian, cut to what the input holds), then that
 * file, then the environment: NAME=VALUE strings, one a line (at most
 * FUZZ_CONFIG_ENV_MAX).
 */
#ifndef PVREPL_FUZZ_H
#define PVREPL_FUZZ_H

#include <endian.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "journal_format.h"
#include "map.h"
#include "proto.h"

#define FUZZ_PROTO_MODE_PAYLOAD 0x20u
#define FUZZ_PROTO_TYPES	(PROTO_TYPE_MAX + 2u)

/* The smallest payload-mode byte for type (what corpus-gen writes). */
static inline unsigned char fuzz_proto_mode_of(unsigned type)
{
	unsigned m = FUZZ_PROTO_MODE_PAYLOAD;

	while (m % FUZZ_PROTO_TYPES != type)
		m++;
	return (unsigned char)m;
}

#define FUZZ_MAP_FIX_BASE_HEADER (1u << 0) /* the header checksum of `map` */
#define FUZZ_MAP_FIX_BASE_BODY	 (1u << 1) /* the checksum of its hashes */
#define FUZZ_MAP_FIX_LOG_HEADER	 (1u << 2) /* the log header: checksum, the base's volume id */
#define FUZZ_MAP_FIX_RECORDS	 (1u << 3) /* every whole record's checksum */
#define FUZZ_MAP_NO_LOG		 (1u << 4) /* no `map.log` file */
#define FUZZ_MAP_FIX_ALL                                                               \
	(FUZZ_MAP_FIX_BASE_HEADER | FUZZ_MAP_FIX_BASE_BODY | FUZZ_MAP_FIX_LOG_HEADER | \
	 FUZZ_MAP_FIX_RECORDS)
#define FUZZ_MAP_PREFIX_BYTES 3u

#define FUZZ_JOURNAL_FIX_SUPER	  (1u << 0) /* identity, sizes, slot parity, checksum */
#define FUZZ_JOURNAL_FIX_RECORDS  (1u << 1) /* block hashes, record checksums, commit fields */
#define FUZZ_JOURNAL_FIX_ALL	  (FUZZ_JOURNAL_FIX_SUPER | FUZZ_JOURNAL_FIX_RECORDS)
#define FUZZ_JOURNAL_SUPER_BYTES  sizeof(struct journal_disk_super)
#define FUZZ_JOURNAL_PREFIX_BYTES (1u + JOURNAL_DISK_SLOTS * FUZZ_JOURNAL_SUPER_BYTES)
#define FUZZ_JOURNAL_AREA_MAX	  (28u << 10)
#define FUZZ_JOURNAL_BLOCK_BYTES  512u
#define FUZZ_JOURNAL_VOLUME_BYTES (64u << 10)

#define FUZZ_RECORD_FILE_MAX (64u << 10)

#define FUZZ_VSTATE_FIX_CHECKSUM (1u << 0) /* the record's checksum */

#define FUZZ_PENDING_FIX_SIZE	(1u << 0) /* the count: what the file holds, the file cut to it */
#define FUZZ_PENDING_FIX_BODY	(1u << 1) /* the checksum of the hashes */
#define FUZZ_PENDING_FIX_HEADER (1u << 2) /* the header's checksum */
#define FUZZ_PENDING_FIT_MAP	(1u << 3) /* the map: the header's epochs, size and volume */
#define FUZZ_PENDING_FIX_ALL	(FUZZ_PENDING_FIX_BODY | FUZZ_PENDING_FIX_HEADER)
#define FUZZ_PENDING_BLOCKS	64u
#define FUZZ_PENDING_BLOCKS_MAX 4096u
#define FUZZ_PENDING_EPOCH	2u

#define FUZZ_STATUS_FIX_RECORD (1u << 0) /* the checksum of the 552-byte record */
#define FUZZ_STATUS_FIX_EXT    (1u << 1) /* of the extension */
#define FUZZ_STATUS_FIX_EXT2   (1u << 2) /* of the second extension */
#define FUZZ_STATUS_TEXT       (1u << 3) /* pvrepl status -o text (else -o json) */
#define FUZZ_STATUS_CHECK      (1u << 4) /* with --check */
#define FUZZ_STATUS_FIX_ALL    (FUZZ_STATUS_FIX_RECORD | FUZZ_STATUS_FIX_EXT | FUZZ_STATUS_FIX_EXT2)

#define FUZZ_CONFIG_PROBLEMS	 7u	   /* problems_max: these bits, 0 for CONFIG_PROBLEMS_MAX */
#define FUZZ_CONFIG_SHORT_MSG	 (1u << 3) /* config_gather's message: 64 bytes */
#define FUZZ_CONFIG_NO_FILE	 (1u << 4) /* config_gather without a file (path NULL) */
#define FUZZ_CONFIG_PREFIX_BYTES 3u
#define FUZZ_CONFIG_ENV_MAX	 32u

/* The map fuzz_pending applies a file to: blocks of 4 KiB, block i's hash 0x1000 + i,
 * confirmed at epoch FUZZ_PENDING_EPOCH - 1 (volume id 0x5a...), none dirty. */
static inline int fuzz_pending_map(struct map *m, uint64_t blocks)
{
	int rc = map_create(m, "fuzzvol", blocks * 4096, 4096);

	if (rc)
		return rc;
	memset(m->volume_id, 0x5a, sizeof(m->volume_id));
	m->epoch = FUZZ_PENDING_EPOCH - 1;
	m->empty = false;
	for (uint64_t b = 0; b < blocks; b++)
		m->hashes[b] = 0x1000 + b;
	return 0;
}

/* A small journal: 512-byte blocks, a 64 KiB volume, four 128 KiB buffers. */
static inline void fuzz_journal_config(struct journal_config *c)
{
	memset(c, 0, sizeof(*c));
	c->backend = KFIO_BACKEND_SIM;
	c->block_bytes = FUZZ_JOURNAL_BLOCK_BYTES;
	c->volume_bytes = FUZZ_JOURNAL_VOLUME_BYTES;
	for (unsigned i = 0; i < JOURNAL_DISK_VOLUME_ID_BYTES; i++)
		c->volume_id[i] = (uint8_t)(0xf0 + i);
	c->queue_depth = 4;
	c->buf_bytes = JOURNAL_BUF_BYTES_MIN;
}

/* ------------------------------------------------ helpers of the targets */

/* A broken property: abort, so that libFuzzer keeps the input. */
static inline void fuzz_check_at(int cond, int line)
{
	if (!cond) {
		fprintf(stderr, "fuzz_check failed at line %d\n", line);
		abort();
	}
}
#define fuzz_check(c) fuzz_check_at((c), __LINE__)

/* Makes the target's temp directory, on /dev/shm when there is one (fsyncs are free). */
static inline void fuzz_tmpdir(char *dir, size_t len, const char *target)
{
	struct stat st;
	const char *tmp = getenv("TMPDIR");

	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode))
		tmp = "/dev/shm";
	snprintf(dir, len, "%s/pvrepl-%s-XXXXXX", tmp ? tmp : "/tmp", target);
	if (mkdtemp(dir) == NULL) {
		perror(target);
		exit(1);
	}
}

/* dir/name := the n bytes at p. */
static inline void fuzz_write_file(const char *dir, const char *name, const void *p, size_t n)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	fuzz_check(fd >= 0);
	fuzz_check(n == 0 || write(fd, p, n) == (ssize_t)n);
	close(fd);
}

/* Little-endian fields of on-disk structs, at any alignment. */
static inline uint64_t fuzz_get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static inline uint32_t fuzz_get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline void fuzz_put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static inline void fuzz_put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

#endif
