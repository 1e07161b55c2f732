// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for the journal's decoders: the superblock pair read by
 * journal_open and the records journal_recover verifies and replays (`make
 * fuzz`; the input layout is in fuzz.h). Each input becomes the file `journal`
 * of a temp state directory (on /dev/shm when there is one) over a zeroed
 * 64 KiB standby file, through kfio's simulated backend, so nothing but the
 * two files is touched and power is never really cut.
 *
 * Checksums and block hashes would stop almost every mutation, so flag bits make
 * this target re-sign what the fuzzer changed: each non-blank superblock gets the
 * config's identity and the file's size, a sequence of its slot's parity and its
 * checksum; each structurally whole record gets its blocks' hashes and its
 * checksum, and both superblocks the records' count, length and chain.
 *
 * Properties: open and recover return 0, -EBADMSG or -EINVAL (never an assert:
 * journal_check_invariants runs around recover, and disk bytes must never reach
 * it); a recover that fails leaves the standby untouched (all zero); one that
 * replays leaves every block it reported holding the hash it reported, and
 * every other block zero; a recovered journal takes a new epoch. Anything else
 * aborts on purpose.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "delta.h"
#include "fuzz.h"
#include "journal.h"
#include "journal_format.h"
#include "kfio.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define VOL_BLOCKS   (FUZZ_JOURNAL_VOLUME_BYTES / FUZZ_JOURNAL_BLOCK_BYTES)
#define FILE_MAX     (JOURNAL_DISK_RECORDS_OFFSET + FUZZ_JOURNAL_AREA_MAX)
#define STANDBY_FILE "standby"

static char dir[256], standby_path[300], journal_path[300];
static uint8_t img[FILE_MAX];
static uint8_t vol[FUZZ_JOURNAL_VOLUME_BYTES];
static uint64_t reported[VOL_BLOCKS];
static uint8_t seen[VOL_BLOCKS];

static void remove_dir(void)
{
	unlink(journal_path);
	unlink(standby_path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_tmpdir(dir, sizeof(dir), "fuzz_journal");
	snprintf(standby_path, sizeof(standby_path), "%s/%s", dir, STANDBY_FILE);
	snprintf(journal_path, sizeof(journal_path), "%s/%s", dir, JOURNAL_FILE);
	atexit(remove_dir);
	return 0;
}

static uint64_t round4k(uint64_t v)
{
	return (v + JOURNAL_DISK_ALIGN_BYTES - 1) / JOURNAL_DISK_ALIGN_BYTES *
	       JOURNAL_DISK_ALIGN_BYTES;
}

#define SUPER(field) offsetof(struct journal_disk_super, field)
#define REC(field)   offsetof(struct journal_disk_record, field)

/*
 * Re-signs each structurally whole record of the area (area_n bytes) as
 * journal_add_* would have, then writes their count, length and chain into both
 * superblocks. Stops at the first record that is not whole.
 */
static void fix_records(uint8_t *area, uint64_t area_n)
{
	const uint32_t bb = FUZZ_JOURNAL_BLOCK_BYTES;
	struct delta_stream chain;
	uint64_t off = 0, count = 0;

	delta_stream_init(&chain, JOURNAL_DISK_SEED_CHAIN);
	while (area_n - off >= JOURNAL_DISK_ALIGN_BYTES) {
		uint8_t *r = area + off;
		uint32_t type = fuzz_get_le32(r + REC(type)),
			 n = fuzz_get_le32(r + REC(block_count));
		uint64_t first = fuzz_get_le64(r + REC(first_block)), hsec, dsec, sum;
		struct delta_stream s;
		bool run_ok = n != 0 && first < VOL_BLOCKS && n <= VOL_BLOCKS - first;

		if (fuzz_get_le64(r + REC(magic)) != JOURNAL_DISK_RECORD_MAGIC)
			break;
		/* a barrier has no run; a DATA or ZERO record's run is inside the volume */
		if (type == JOURNAL_DISK_RECORD_BARRIER && (n != 0 || first != 0))
			break;
		if (type != JOURNAL_DISK_RECORD_BARRIER &&
		    (!run_ok ||
		     (type != JOURNAL_DISK_RECORD_DATA && type != JOURNAL_DISK_RECORD_ZERO)))
			break;
		hsec = round4k(sizeof(struct journal_disk_record) +
			       (type == JOURNAL_DISK_RECORD_DATA ? 8ull * n : 0));
		dsec = type == JOURNAL_DISK_RECORD_DATA ? round4k((uint64_t)n * bb) : 0;
		if (hsec + dsec > area_n - off)
			break;
		for (uint32_t i = 0; type == JOURNAL_DISK_RECORD_DATA && i < n; i++)
			fuzz_put_le64(r + sizeof(struct journal_disk_record) + 8ull * i,
				      delta_hash(r + hsec + (uint64_t)i * bb, bb));
		fuzz_put_le64(r + REC(checksum), 0);
		delta_stream_init(&s, JOURNAL_DISK_SEED_RECORD);
		delta_stream_update(&s, r, sizeof(struct journal_disk_record));
		if (type == JOURNAL_DISK_RECORD_DATA)
			delta_stream_update(&s, r + sizeof(struct journal_disk_record), 8ull * n);
		sum = delta_stream_digest(&s);
		fuzz_put_le64(r + REC(checksum), sum);
		sum = htole64(sum);
		delta_stream_update(&chain, &sum, sizeof(sum));
		off += hsec + dsec;
		count++;
	}
	for (unsigned k = 0; k < JOURNAL_DISK_SLOTS; k++) {
		uint8_t *sb = img + k * JOURNAL_DISK_SLOT_BYTES;

		fuzz_put_le64(sb + SUPER(record_count), count);
		fuzz_put_le64(sb + SUPER(records_bytes), off);
		fuzz_put_le64(sb + SUPER(records_checksum), delta_stream_digest(&chain));
	}
}

/* Each non-blank superblock: this journal's identity and size, its slot, its checksum. */
static void fix_supers(const struct journal_config *c, uint64_t file_bytes)
{
	for (unsigned k = 0; k < JOURNAL_DISK_SLOTS; k++) {
		uint8_t *sb = img + k * JOURNAL_DISK_SLOT_BYTES;
		uint64_t seq = fuzz_get_le64(sb + SUPER(sequence));

		if (delta_is_zero(sb, FUZZ_JOURNAL_SUPER_BYTES))
			continue; /* a blank slot stays blank */
		fuzz_put_le64(sb + SUPER(magic), JOURNAL_DISK_SUPER_MAGIC);
		fuzz_put_le32(sb + SUPER(format_version), JOURNAL_DISK_VERSION);
		fuzz_put_le32(sb + SUPER(block_bytes), c->block_bytes);
		memcpy(sb + SUPER(volume_id), c->volume_id, JOURNAL_DISK_VOLUME_ID_BYTES);
		fuzz_put_le64(sb + SUPER(volume_bytes), c->volume_bytes);
		fuzz_put_le64(sb + SUPER(journal_bytes), file_bytes);
		if (seq % JOURNAL_DISK_SLOTS != k)
			fuzz_put_le64(sb + SUPER(sequence), seq ^ 1);
		fuzz_put_le64(sb + SUPER(checksum),
			      delta_hash_seeded(sb, SUPER(checksum), JOURNAL_DISK_SEED_SUPER));
	}
}

static int on_block(uint64_t block, uint64_t hash, void *ctx)
{
	(void)ctx;
	fuzz_check(block < VOL_BLOCKS);
	reported[block] = hash;
	seen[block] = 1;
	return 0;
}

/* What recover left on the standby: as reported by on_block, zero elsewhere. */
static void check_standby(bool replayed)
{
	int fd = open(standby_path, O_RDONLY | O_CLOEXEC);

	fuzz_check(fd >= 0);
	fuzz_check(pread(fd, vol, sizeof(vol), 0) == (ssize_t)sizeof(vol));
	close(fd);
	for (uint64_t b = 0; b < VOL_BLOCKS; b++) {
		const uint8_t *p = vol + b * FUZZ_JOURNAL_BLOCK_BYTES;

		if (replayed && seen[b])
			fuzz_check(delta_hash(p, FUZZ_JOURNAL_BLOCK_BYTES) == reported[b]);
		else
			fuzz_check(delta_is_zero(p, FUZZ_JOURNAL_BLOCK_BYTES));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct journal_config cfg;
	struct journal_recovery rec;
	struct journal_status st;
	struct kfio_dev dev;
	struct journal *j;
	char err[JOURNAL_ERR_MAX] = "";
	uint64_t area_n, file_bytes;
	unsigned flags;
	int rc;

	if (size < 1)
		return 0;
	flags = data[0];
	data++;
	size--;
	if (size > FUZZ_JOURNAL_PREFIX_BYTES - 1 + FUZZ_JOURNAL_AREA_MAX)
		size = FUZZ_JOURNAL_PREFIX_BYTES - 1 + FUZZ_JOURNAL_AREA_MAX;
	memset(img, 0, sizeof(img));
	for (unsigned k = 0; k < JOURNAL_DISK_SLOTS && size > 0; k++) {
		size_t n = size < FUZZ_JOURNAL_SUPER_BYTES ? size : FUZZ_JOURNAL_SUPER_BYTES;

		memcpy(img + k * JOURNAL_DISK_SLOT_BYTES, data, n);
		data += n;
		size -= n;
	}
	memcpy(img + JOURNAL_DISK_RECORDS_OFFSET, data, size);
	area_n = round4k(size);
	if (area_n < 2 * JOURNAL_DISK_ALIGN_BYTES)
		area_n = 2 * JOURNAL_DISK_ALIGN_BYTES;
	file_bytes = JOURNAL_DISK_RECORDS_OFFSET + area_n;

	fuzz_journal_config(&cfg);
	if (flags & FUZZ_JOURNAL_FIX_RECORDS)
		fix_records(img + JOURNAL_DISK_RECORDS_OFFSET, area_n);
	if (flags & FUZZ_JOURNAL_FIX_SUPER)
		fix_supers(&cfg, file_bytes);
	fuzz_write_file(dir, JOURNAL_FILE, img, file_bytes);
	memset(vol, 0, sizeof(vol));
	fuzz_write_file(dir, STANDBY_FILE, vol, sizeof(vol));
	memset(seen, 0, sizeof(seen));

	fuzz_check(kfio_dev_open(&dev, standby_path, KFIO_OPEN_WRITE) == 0);
	rc = journal_open(&j, dir, &cfg, &dev, err, sizeof(err));
	fuzz_check(rc == 0 || rc == -EBADMSG || rc == -EINVAL);
	if (rc != 0) {
		fuzz_check(j == NULL && err[0] != '\0');
		goto close_dev;
	}
	rc = journal_recover(j, &rec, on_block, NULL);
	fuzz_check(rc == 0 || rc == -EBADMSG);
	journal_status(j, &st);
	fuzz_check(!st.failed);
	if (rc != 0) {
		fuzz_check(st.need_recover && journal_err(j)[0] != '\0');
		check_standby(false);
		goto close_j;
	}
	check_standby(rec.found == JOURNAL_COMMITTED);
	fuzz_check(!st.need_recover);
	fuzz_check(st.state == JOURNAL_EMPTY || st.state == JOURNAL_APPLIED);
	/* a recovered journal takes a new epoch (then drops it) */
	fuzz_check(journal_begin(j, 1, 1, 0) == 0);
	fuzz_check(journal_add_zero(j, 0, 1) == 0);
	fuzz_check(journal_add_barrier(j) == 0);
	fuzz_check(journal_abort(j) == 0);
close_j:
	journal_close(j);
close_dev:
	kfio_dev_close(&dev);
	return 0;
}
