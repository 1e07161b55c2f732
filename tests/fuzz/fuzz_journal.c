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

#define VOL_BLOCKS (FUZZ_JOURNAL_VOLUME_BYTES / FUZZ_JOURNAL_BLOCK_BYTES)
#define FILE_MAX   (JOURNAL_DISK_RECORDS_OFFSET + FUZZ_JOURNAL_AREA_MAX)

static char dir[256], standby_path[300], journal_path[300];
static uint8_t img[FILE_MAX];
static uint8_t vol[FUZZ_JOURNAL_VOLUME_BYTES];
static uint64_t reported[VOL_BLOCKS];
static uint8_t seen[VOL_BLOCKS];

static void check(int cond)
{
	if (!cond)
		abort();
}

static void remove_dir(void)
{
	unlink(journal_path);
	unlink(standby_path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct stat st;
	const char *tmp = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode))
		tmp = "/dev/shm";
	snprintf(dir, sizeof(dir), "%s/pvrepl-fuzz-journal-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("fuzz_journal: mkdtemp");
		exit(1);
	}
	snprintf(standby_path, sizeof(standby_path), "%s/standby", dir);
	snprintf(journal_path, sizeof(journal_path), "%s/%s", dir, JOURNAL_FILE);
	atexit(remove_dir);
	return 0;
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	check(fd >= 0);
	check(write(fd, p, n) == (ssize_t)n);
	close(fd);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
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
		uint32_t type = get32(r + REC(type)), n = get32(r + REC(block_count));
		uint64_t first = get64(r + REC(first_block)), hsec, dsec, sum;
		struct delta_stream s;

		if (get64(r + REC(magic)) != JOURNAL_DISK_RECORD_MAGIC || n == 0 ||
		    first >= VOL_BLOCKS || n > VOL_BLOCKS - first ||
		    (type != JOURNAL_DISK_RECORD_DATA && type != JOURNAL_DISK_RECORD_ZERO))
			break;
		hsec = round4k(sizeof(struct journal_disk_record) +
			       (type == JOURNAL_DISK_RECORD_DATA ? 8ull * n : 0));
		dsec = type == JOURNAL_DISK_RECORD_DATA ? round4k((uint64_t)n * bb) : 0;
		if (hsec + dsec > area_n - off)
			break;
		for (uint32_t i = 0; type == JOURNAL_DISK_RECORD_DATA && i < n; i++)
			put64(r + sizeof(struct journal_disk_record) + 8ull * i,
			      delta_hash(r + hsec + (uint64_t)i * bb, bb));
		put64(r + REC(checksum), 0);
		delta_stream_init(&s, JOURNAL_DISK_SEED_RECORD);
		delta_stream_update(&s, r, sizeof(struct journal_disk_record));
		if (type == JOURNAL_DISK_RECORD_DATA)
			delta_stream_update(&s, r + sizeof(struct journal_disk_record), 8ull * n);
		sum = delta_stream_digest(&s);
		put64(r + REC(checksum), sum);
		sum = htole64(sum);
		delta_stream_update(&chain, &sum, sizeof(sum));
		off += hsec + dsec;
		count++;
	}
	for (unsigned k = 0; k < JOURNAL_DISK_SLOTS; k++) {
		uint8_t *sb = img + k * JOURNAL_DISK_SLOT_BYTES;

		put64(sb + SUPER(record_count), count);
		put64(sb + SUPER(records_bytes), off);
		put64(sb + SUPER(records_checksum), delta_stream_digest(&chain));
	}
}

/* Each non-blank superblock: this journal's identity and size, its slot, its checksum. */
static void fix_supers(const struct journal_config *c, uint64_t file_bytes)
{
	for (unsigned k = 0; k < JOURNAL_DISK_SLOTS; k++) {
		uint8_t *sb = img + k * JOURNAL_DISK_SLOT_BYTES;
		uint64_t seq = get64(sb + SUPER(sequence));

		if (delta_is_zero(sb, FUZZ_JOURNAL_SUPER_BYTES))
			continue; /* a blank slot stays blank */
		put64(sb + SUPER(magic), JOURNAL_DISK_SUPER_MAGIC);
		put32(sb + SUPER(format_version), JOURNAL_DISK_VERSION);
		put32(sb + SUPER(block_bytes), c->block_bytes);
		memcpy(sb + SUPER(volume_id), c->volume_id, JOURNAL_DISK_VOLUME_ID_BYTES);
		put64(sb + SUPER(volume_bytes), c->volume_bytes);
		put64(sb + SUPER(journal_bytes), file_bytes);
		if (seq % JOURNAL_DISK_SLOTS != k)
			put64(sb + SUPER(sequence), seq ^ 1);
		put64(sb + SUPER(checksum),
		      delta_hash_seeded(sb, SUPER(checksum), JOURNAL_DISK_SEED_SUPER));
	}
}

static int on_block(uint64_t block, uint64_t hash, void *ctx)
{
	(void)ctx;
	check(block < VOL_BLOCKS);
	reported[block] = hash;
	seen[block] = 1;
	return 0;
}

/* What recover left on the standby: as reported by on_block, zero elsewhere. */
static void check_standby(bool replayed)
{
	int fd = open(standby_path, O_RDONLY | O_CLOEXEC);

	check(fd >= 0);
	check(pread(fd, vol, sizeof(vol), 0) == (ssize_t)sizeof(vol));
	close(fd);
	for (uint64_t b = 0; b < VOL_BLOCKS; b++) {
		const uint8_t *p = vol + b * FUZZ_JOURNAL_BLOCK_BYTES;

		if (replayed && seen[b])
			check(delta_hash(p, FUZZ_JOURNAL_BLOCK_BYTES) == reported[b]);
		else
			check(delta_is_zero(p, FUZZ_JOURNAL_BLOCK_BYTES));
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
	write_file(journal_path, img, file_bytes);
	memset(vol, 0, sizeof(vol));
	write_file(standby_path, vol, sizeof(vol));
	memset(seen, 0, sizeof(seen));

	check(kfio_dev_open(&dev, standby_path, KFIO_OPEN_WRITE) == 0);
	rc = journal_open(&j, dir, &cfg, &dev, err, sizeof(err));
	check(rc == 0 || rc == -EBADMSG || rc == -EINVAL);
	if (rc != 0) {
		check(j == NULL && err[0] != '\0');
		goto close_dev;
	}
	rc = journal_recover(j, &rec, on_block, NULL);
	check(rc == 0 || rc == -EBADMSG);
	journal_status(j, &st);
	check(!st.failed);
	if (rc != 0) {
		check(st.need_recover && journal_err(j)[0] != '\0');
		check_standby(false);
		goto close_j;
	}
	check_standby(rec.found == JOURNAL_COMMITTED);
	check(!st.need_recover);
	check(st.state == JOURNAL_EMPTY || st.state == JOURNAL_APPLIED);
	/* a recovered journal takes a new epoch (then drops it) */
	check(journal_begin(j, 1, 1, 0) == 0);
	check(journal_add_zero(j, 0, 1) == 0);
	check(journal_abort(j) == 0);
close_j:
	journal_close(j);
close_dev:
	kfio_dev_close(&dev);
	return 0;
}
