// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for status_load, the decoder of a volume's `status` record, and
 * for what reads it back (`make fuzz`; the input layout is in fuzz.h). Each input
 * becomes the file `status` of a temp directory (/dev/shm when there is one), where
 * stdout goes too, for `pvrepl status` (cmd_status). Flag bits re-sign each part's
 * checksum (record, extension, second extension), so mutations reach the fields.
 * Properties: status_load returns 0 or -EBADMSG and accepts only known roles,
 * states, tracking and captures; `pvrepl status -o json` prints JSON that parses and
 * names the volume, epoch, state and capture; --check exits 0, 1 or 2; a heartbeat
 * (status_heartbeat_nosync: load, store) gives back the same record but for the
 * writer. Anything else aborts on purpose.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "delta.h"
#include "fuzz.h"
#include "status.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The record (status.c: status_disk, status_ext, status_ext2), each part's checksum last. */
static const size_t part_off[] = { 0, 552, 776 }, part_len[] = { 552, 224, 40 };

#define STDOUT_FILE   "stdout"
#define FIELD(v, key) (json_string_value(json_object_get((v), (key))) ?: "")
/* the same string in t and s, then the same bytes after it */
#define SAME_STR(f) (fuzz_check(!strcmp(t.f, s->f)), memcpy(t.f, s->f, sizeof(t.f)))

static char dir[256];
static uint8_t file[FUZZ_RECORD_FILE_MAX];
static char out[1 << 16];

static void remove_dir(void)
{
	static const char *const names[] = { STATUS_FILE, STATUS_TMP_FILE, STDOUT_FILE };
	char path[512];

	for (unsigned i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[512];
	int fd;

	(void)argc;
	(void)argv;
	fuzz_tmpdir(dir, sizeof(dir), "fuzz_status");
	atexit(remove_dir);
	snprintf(path, sizeof(path), "%s/%s", dir, STDOUT_FILE);
	fflush(stdout);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	fuzz_check(fd >= 0 && dup2(fd, STDOUT_FILENO) == STDOUT_FILENO);
	close(fd);
	return 0;
}

/* `pvrepl status --state-dir DIR -o json|text [--check]`; s: what status_load gave. */
static void print(const struct status_record *s, bool loaded, unsigned flags)
{
	char *argv[] = {
		"status",  "--state-dir", dir, "-o", flags & FUZZ_STATUS_TEXT ? "text" : "json",
		"--check", NULL
	};
	json_t *root, *v, *name;
	ssize_t n;
	int rc;

	fuzz_check(ftruncate(STDOUT_FILENO, 0) == 0 && lseek(STDOUT_FILENO, 0, SEEK_SET) == 0);
	optind = 0;
	rc = cmd_status(flags & FUZZ_STATUS_CHECK ? 6 : 5, argv);
	fuzz_check(fflush(stdout) == 0);
	if (flags & FUZZ_STATUS_CHECK)
		fuzz_check(rc >= 0 && rc <= 2 && (loaded || rc == 2));
	else
		fuzz_check(rc == (loaded ? CLI_EXIT_OK : CLI_EXIT_NOINPUT));
	if (flags & FUZZ_STATUS_TEXT)
		return;
	n = pread(STDOUT_FILENO, out, sizeof(out), 0);
	fuzz_check(n > 0 && (size_t)n < sizeof(out));
	root = json_loadb(out, (size_t)n, 0, NULL);
	v = json_array_get(json_object_get(root, "volumes"), 0);
	fuzz_check(root != NULL && loaded == (v != NULL));
	if (v) {
		name = json_string(s->volume); /* NULL: not UTF-8, shown with '?' */
		fuzz_check(!name || !strcmp(FIELD(v, "volume"), s->volume));
		json_decref(name);
		fuzz_check(json_integer_value(json_object_get(v, "epoch")) == (json_int_t)s->epoch);
		fuzz_check(!strcmp(FIELD(v, "lastKnownState"), status_state_name(s->state)));
		fuzz_check(!s->consistent ||
			   !strcmp(FIELD(v, "capture"), status_capture_name(s->capture)));
	}
	json_decref(root);
}

/* Load, store, load: the same record but for the writer (and rpo's rounding to ms). */
static void heartbeat(const struct status_record *s)
{
	struct status_record t;

	fuzz_check(status_heartbeat_nosync(dir) == 0 && status_load(&t, dir) == 0);
	fuzz_check(t.writer_pid == (uint32_t)getpid() && t.daemon == s->daemon);
	fuzz_check(fabs(t.rpo_target_seconds - s->rpo_target_seconds) <=
		   1e-3 + s->rpo_target_seconds * 1e-12);
	t.writer_pid = s->writer_pid;
	t.heartbeat_unix = s->heartbeat_unix;
	t.rpo_target_seconds = s->rpo_target_seconds;
	SAME_STR(volume), SAME_STR(peer), SAME_STR(last_error), SAME_STR(scan_note);
	fuzz_check(memcmp(&t, s, sizeof(t)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct status_record s;
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
	for (unsigned i = 0; i < 3; i++)
		if ((flags & (FUZZ_STATUS_FIX_RECORD << i)) && size >= part_off[i] + part_len[i])
			fuzz_put_le64(file + part_off[i] + part_len[i] - 8,
				      delta_hash(file + part_off[i], part_len[i] - 8));
	fuzz_write_file(dir, STATUS_FILE, file, size);

	rc = status_load(&s, dir);
	fuzz_check(rc == 0 || rc == -EBADMSG);
	fuzz_check(rc ||
		   (s.role <= STATUS_ROLE_SECONDARY && s.state < STATUS_STATE_COUNT &&
		    s.tracking <= STATUS_TRACKING_BPF && s.capture <= STATUS_CAPTURE_SNAPSHOT &&
		    s.crash_consistent == (s.capture != STATUS_CAPTURE_LIVE)));
	/* Times and rates from disk may be anything (once: an unterminated
	 * date, overflowing differences and casts). */
	if (rc == 0 || !(flags & FUZZ_STATUS_TEXT))
		print(&s, rc == 0, flags); /* a text run without a record only complains */
	if (rc == 0)
		heartbeat(&s);
	return 0;
}
