// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for map_load, the decoder of the map's files as they come off
 * disk (`make fuzz`; the input layout is in fuzz.h). map_load reads a state
 * directory, so each input becomes the files `map` and `map.log` of one temp
 * directory (on /dev/shm when there is one: map_load fsyncs the log when it cuts
 * a torn tail), made at start-up and removed at exit.
 *
 * Checksums would stop almost every mutation at the first header, so flag bits
 * make this target re-sign what the fuzzer changed: the base header, the base's
 * hashes, the log header (with the base's volume id) and every whole record.
 *
 * Properties: map_load returns 0 or -EBADMSG with a sentence, never crashes and
 * never reads outside what it was given (ASan); a map it accepts has the
 * geometry its header claims; and loading again gives the same map, so cutting a
 * torn tail left a log that says the same thing. Anything else aborts on purpose.
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
#include "map.h"
#include "map_format.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAP_FILE_MAX (1u << 20)

static char dir[256];
static uint8_t base_buf[FUZZ_MAP_FILE_MAX];
static uint8_t log_buf[FUZZ_MAP_FILE_MAX];

static void remove_dir(void)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, MAP_FILE);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s", dir, MAP_LOG_FILE);
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_tmpdir(dir, sizeof(dir), "fuzz_map");
	atexit(remove_dir);
	return 0;
}

static void remove_file(const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fuzz_check(unlink(path) == 0 || errno == ENOENT);
}

/* Re-signs the base as map_write_base would have: header, then the hashes. */
static void fix_base(uint8_t *b, size_t n, unsigned flags)
{
	const size_t hdr = sizeof(struct map_disk_header);

	if (n < hdr)
		return;
	if (flags & FUZZ_MAP_FIX_BASE_BODY)
		fuzz_put_le64(
			b + offsetof(struct map_disk_header, body_checksum),
			delta_hash_seeded(b + hdr, (n - hdr) / 8 * 8, MAP_DISK_SEED_BASE_BODY));
	if (flags & FUZZ_MAP_FIX_BASE_HEADER)
		fuzz_put_le64(b + offsetof(struct map_disk_header, header_checksum),
			      delta_hash_seeded(b,
						offsetof(struct map_disk_header, header_checksum),
						MAP_DISK_SEED_BASE_HEADER));
}

/* Re-signs the log: its header (owned by the base's volume), then each whole record. */
static void fix_log(uint8_t *l, size_t n, const uint8_t *base, size_t base_n, unsigned flags)
{
	const size_t hdr = sizeof(struct map_disk_log_header);
	const size_t rec = sizeof(struct map_disk_record);
	size_t off = hdr;

	if (n < hdr)
		return;
	if (flags & FUZZ_MAP_FIX_LOG_HEADER) {
		if (base_n >= sizeof(struct map_disk_header))
			memcpy(l + offsetof(struct map_disk_log_header, volume_id),
			       base + offsetof(struct map_disk_header, volume_id),
			       MAP_DISK_VOLUME_ID_BYTES);
		fuzz_put_le64(l + offsetof(struct map_disk_log_header, checksum),
			      delta_hash_seeded(l, offsetof(struct map_disk_log_header, checksum),
						MAP_DISK_SEED_LOG_HEADER));
	}
	while ((flags & FUZZ_MAP_FIX_RECORDS) && n - off >= rec) {
		uint64_t count =
			fuzz_get_le64(l + off + offsetof(struct map_disk_record, entry_count));
		struct delta_stream s;
		struct map_disk_record h;

		if (count > (n - off - rec) / sizeof(struct map_disk_entry))
			break; /* a torn tail stays torn */
		memcpy(&h, l + off, rec);
		h.checksum = 0;
		delta_stream_init(&s, MAP_DISK_SEED_RECORD);
		delta_stream_update(&s, &h, rec);
		delta_stream_update(&s, l + off + rec, count * sizeof(struct map_disk_entry));
		fuzz_put_le64(l + off + offsetof(struct map_disk_record, checksum),
			      delta_stream_digest(&s));
		off += rec + count * sizeof(struct map_disk_entry);
	}
}

static void check_same(const struct map *a, const struct map *b)
{
	fuzz_check(a->block_count == b->block_count && a->block_bytes == b->block_bytes);
	fuzz_check(a->size_bytes == b->size_bytes);
	fuzz_check(a->epoch == b->epoch && a->generation == b->generation);
	fuzz_check(a->log_bytes == b->log_bytes);
	fuzz_check(memcmp(a->volume_id, b->volume_id, sizeof(a->volume_id)) == 0);
	fuzz_check(memcmp(a->volume_name, b->volume_name, sizeof(a->volume_name)) == 0);
	fuzz_check(memcmp(a->hashes, b->hashes, a->block_count * sizeof(*a->hashes)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512] = "";
	struct map m, again;
	size_t base_n, log_n;
	unsigned flags;
	int rc;

	if (size < FUZZ_MAP_PREFIX_BYTES)
		return 0;
	flags = data[0];
	base_n = (size_t)data[1] | (size_t)data[2] << 8;
	data += FUZZ_MAP_PREFIX_BYTES;
	size -= FUZZ_MAP_PREFIX_BYTES;
	if (base_n > size)
		base_n = size;
	log_n = size - base_n;
	if (log_n > FUZZ_MAP_FILE_MAX)
		log_n = FUZZ_MAP_FILE_MAX;
	memcpy(base_buf, data, base_n);
	memcpy(log_buf, data + base_n, log_n);
	fix_base(base_buf, base_n, flags);
	fix_log(log_buf, log_n, base_buf, base_n, flags);
	fuzz_write_file(dir, MAP_FILE, base_buf, base_n);
	if (flags & FUZZ_MAP_NO_LOG)
		remove_file(MAP_LOG_FILE);
	else
		fuzz_write_file(dir, MAP_LOG_FILE, log_buf, log_n);

	rc = map_load(&m, dir, err, sizeof(err));
	fuzz_check(rc == 0 || rc == -EBADMSG);
	if (rc != 0) {
		fuzz_check(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
		return 0;
	}
	fuzz_check(m.block_count == (m.size_bytes - 1) / m.block_bytes + 1);
	fuzz_check(m.hashes != NULL && m.dirty != NULL && !m.empty);
	fuzz_check(map_dirty_count(&m) == 0);
	fuzz_check(m.log_bytes <= log_n);
	fuzz_check(m.volume_name[0] != '\0' && memchr(m.volume_name, '\0', sizeof(m.volume_name)));
	/* a torn tail was cut: the files now load to the same map */
	rc = map_load(&again, dir, err, sizeof(err));
	fuzz_check(rc == 0);
	check_same(&m, &again);
	map_release(&again);
	map_release(&m);
	return 0;
}
