// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for pending_apply, the decoder of the sender's `map.pending`
 * (`make fuzz`; the input layout is in fuzz.h). Each input becomes that file of a
 * temp directory (/dev/shm when there is one), applied to fuzz_pending_map's map,
 * or with FUZZ_PENDING_FIT_MAP to one that fits the header (its epochs, block count
 * and volume id). Flag bits re-sign what the fuzzer changed: the entry count (from
 * the file's length), the body's checksum, the header's.
 *
 * Properties: pending_apply returns 0, -ENOENT or -EBADMSG (with a sentence); 0 sets
 * exactly the file's hashes (each block when dense, each pair's when sparse, the
 * last pair winning); -ENOENT leaves the map untouched, and so does -EBADMSG but
 * when a sparse file that checks out names a block past the map: then the pairs
 * before it were applied (pending.h says "m untouched", but the sender reloads its
 * map after any failure: sender.c, settle_lost_ack). Else abort on purpose.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "delta.h"
#include "fuzz.h"
#include "map.h"
#include "pending.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* struct pending_disk (pending.c): a 96-byte header, then the body of u64 words */
#define PD_MAGIC	 0x0a444e4550525650ull
#define PD_SEED		 0x70656e64696e6701ull
#define PD_DENSE	 1u
#define PD_FLAGS	 12u
#define PD_EPOCH	 16u
#define PD_BASE_EPOCH	 24u
#define PD_BLOCK_COUNT	 32u
#define PD_ENTRY_COUNT	 40u
#define PD_VOLUME_ID	 48u
#define PD_BODY_CHECKSUM 64u
#define PD_HEADER_SUM	 88u
#define PD_BYTES	 96u

static char dir[256];
static uint8_t file[FUZZ_RECORD_FILE_MAX];
static uint64_t want[FUZZ_PENDING_BLOCKS_MAX], want_dirty[FUZZ_PENDING_BLOCKS_MAX / 64];

static void remove_dir(void)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, PENDING_FILE);
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_tmpdir(dir, sizeof(dir), "fuzz_pending");
	atexit(remove_dir);
	return 0;
}

/* The map as the file would leave it, up to the first pair past it; whether one is. */
static bool expect(uint64_t blocks, size_t size)
{
	bool dense = fuzz_get_le32(file + PD_FLAGS) & PD_DENSE;
	uint64_t words = (size - PD_BYTES) / 8;

	memset(want_dirty, 0, sizeof(want_dirty));
	for (uint64_t b = 0; b < blocks; b++)
		want[b] = 0x1000 + b;
	for (uint64_t i = 0; i < (dense ? blocks : words / 2) && i < words; i++) {
		uint64_t b = dense ? i : fuzz_get_le64(file + PD_BYTES + 16 * i);

		if (b >= blocks)
			return true;
		want[b] = fuzz_get_le64(file + PD_BYTES + (dense ? 8 * i : 16 * i + 8));
		want_dirty[b / 64] |= 1ull << (b % 64);
	}
	return false;
}

/* The map is fuzz_pending_map's (applied: as expect left want). */
static bool same(const struct map *m, bool applied)
{
	for (uint64_t b = 0; b < m->block_count; b++)
		if (m->hashes[b] != (applied ? want[b] : 0x1000 + b) ||
		    map_is_dirty(m, b) != (applied && (want_dirty[b / 64] >> (b % 64) & 1)))
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512] = "";
	uint64_t blocks = FUZZ_PENDING_BLOCKS, epoch = FUZZ_PENDING_EPOCH, n;
	unsigned flags;
	struct map m;
	bool past, fit = false;
	int rc;

	if (size < 1)
		return 0;
	flags = data[0];
	data++;
	size--;
	if (size > sizeof(file))
		size = sizeof(file);
	memcpy(file, data, size);
	if (size >= PD_BYTES) {
		bool dense = fuzz_get_le32(file + PD_FLAGS) & PD_DENSE;
		uint64_t avail = (size - PD_BYTES) / 8;

		if (flags & FUZZ_PENDING_FIX_SIZE) {
			avail = dense ? avail : avail / 2 * 2;
			fuzz_put_le64(file + (dense ? PD_BLOCK_COUNT : PD_ENTRY_COUNT),
				      dense ? avail : avail / 2);
			size = PD_BYTES + 8 * avail;
		}
		n = dense ? fuzz_get_le64(file + PD_BLOCK_COUNT)
			  : 2 * fuzz_get_le64(file + PD_ENTRY_COUNT);
		if (flags & FUZZ_PENDING_FIX_BODY)
			fuzz_put_le64(file + PD_BODY_CHECKSUM,
				      delta_hash_seeded(file + PD_BYTES,
							8 * (n < avail ? n : avail), PD_SEED));
		if (flags & FUZZ_PENDING_FIX_HEADER)
			fuzz_put_le64(file + PD_HEADER_SUM, delta_hash(file, PD_HEADER_SUM));
		n = fuzz_get_le64(file + PD_BLOCK_COUNT);
		fit = (flags & FUZZ_PENDING_FIT_MAP) && n >= 1 && n <= FUZZ_PENDING_BLOCKS_MAX;
		if (fit) {
			blocks = n;
			epoch = fuzz_get_le64(file + PD_EPOCH);
		}
	}
	fuzz_write_file(dir, PENDING_FILE, file, size);
	fuzz_check(fuzz_pending_map(&m, blocks) == 0);
	if (fit) {
		m.epoch = fuzz_get_le64(file + PD_BASE_EPOCH);
		memcpy(m.volume_id, file + PD_VOLUME_ID, sizeof(m.volume_id));
	}

	rc = pending_apply(&m, dir, epoch, err, sizeof(err));
	fuzz_check(rc == 0 || rc == -ENOENT || rc == -EBADMSG);
	past = size >= PD_BYTES && expect(blocks, size);
	if (rc == 0) {
		fuzz_check(size >= PD_BYTES && fuzz_get_le64(file) == PD_MAGIC && !past);
		fuzz_check(same(&m, true));
	} else if (rc == -ENOENT) {
		fuzz_check(same(&m, false));
	} else {
		fuzz_check(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
		fuzz_check(same(&m, false) || (past && same(&m, true)));
	}
	map_release(&m);
	return 0;
}
