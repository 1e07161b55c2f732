// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for vstate_load, the decoder of a receiver volume's `state`
 * record (`make fuzz`; the input layout is in fuzz.h). Each input becomes the
 * file `state` of one temp directory (on /dev/shm when there is one), made at
 * start-up and removed at exit.
 *
 * The checksum would stop almost every mutation, so a flag bit makes this target
 * re-sign the first 128 bytes, and mutations reach the version and kind checks
 * and the field decoding behind them.
 *
 * Properties: vstate_load returns 0 or -EBADMSG; -EBADMSG comes with a sentence
 * and a zeroed state; a state it accepts is the file's fields (little-endian),
 * with a known kind, a capture kind of status_capture_of_byte and a consistent
 * point that falls back to the commit time. Anything else aborts on purpose.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "delta.h"
#include "fuzz.h"
#include "status.h"
#include "vstate.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* struct vstate_disk (vstate.c): 128 bytes, the checksum last */
#define VS_BYTES       128u
#define VS_VERSION     4u
#define VS_KIND	       6u
#define VS_CAPTURE     7u
#define VS_EPOCH       8u
#define VS_GENERATION  16u
#define VS_SYNC_EPOCH  24u
#define VS_SYNC_CURSOR 32u
#define VS_COMMITTED   40u
#define VS_VOLUME_ID   48u
#define VS_POINT_MS    64u
#define VS_SYNC_CAP_MS 72u
#define VS_CHECKSUM    120u

static char dir[256];
static uint8_t file[FUZZ_RECORD_FILE_MAX];

static void remove_dir(void)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, VSTATE_FILE);
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_tmpdir(dir, sizeof(dir), "fuzz_vstate");
	atexit(remove_dir);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct vstate zero;
	char err[512] = "";
	struct vstate s;
	int64_t committed, point;
	unsigned flags;
	int rc;

	if (size < 1)
		return 0;
	flags = data[0];
	data++;
	size--;
	if (size > sizeof(file))
		size = sizeof(file);
	memcpy(file, data, size);
	if ((flags & FUZZ_VSTATE_FIX_CHECKSUM) && size >= VS_BYTES)
		fuzz_put_le64(file + VS_CHECKSUM, delta_hash(file, VS_CHECKSUM));
	fuzz_write_file(dir, VSTATE_FILE, file, size);

	rc = vstate_load(&s, dir, err, sizeof(err));
	fuzz_check(rc == 0 || rc == -EBADMSG);
	if (rc != 0) {
		fuzz_check(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
		fuzz_check(memcmp(&s, &zero, sizeof(s)) == 0);
		return 0;
	}
	fuzz_check(size >= VS_BYTES && fuzz_get_le32(file) == VSTATE_MAGIC);
	fuzz_check((file[VS_VERSION] | file[VS_VERSION + 1] << 8) == VSTATE_VERSION);
	fuzz_check((unsigned)s.kind == file[VS_KIND] && s.kind <= VSTATE_CONSISTENT);
	fuzz_check(strcmp(vstate_kind_name(s.kind), "unknown") != 0);
	fuzz_check(s.capture == status_capture_of_byte(file[VS_CAPTURE]));
	fuzz_check(s.capture <= STATUS_CAPTURE_SNAPSHOT && status_capture_name(s.capture)[0]);
	fuzz_check(s.crash_consistent == (file[VS_CAPTURE] != STATUS_CAPTURE_LIVE));
	fuzz_check(s.epoch == fuzz_get_le64(file + VS_EPOCH));
	fuzz_check(s.generation == fuzz_get_le64(file + VS_GENERATION));
	fuzz_check(s.sync_epoch == fuzz_get_le64(file + VS_SYNC_EPOCH));
	fuzz_check(s.sync_cursor == fuzz_get_le64(file + VS_SYNC_CURSOR));
	point = (int64_t)fuzz_get_le64(file + VS_POINT_MS);
	committed = (int64_t)fuzz_get_le64(file + VS_COMMITTED);
	fuzz_check(s.committed_unix == committed);
	/* a record from before consistent_point_ms: the commit time stands for
	 * it, when it is one (a time out of range gives none) */
	fuzz_check(s.consistent_point_ms == (point ? point
					     : committed > 0 && committed < INT64_MAX / 1000
						     ? committed * 1000
						     : 0));
	fuzz_check(s.sync_capture_ms == (int64_t)fuzz_get_le64(file + VS_SYNC_CAP_MS));
	fuzz_check(memcmp(s.volume_id, file + VS_VOLUME_ID, sizeof(s.volume_id)) == 0);
	return 0;
}
