// SPDX-License-Identifier: Apache-2.0
/*
 * status — the per-volume status record (see status.h): one checksummed
 * fixed-size little-endian record. Knows nothing of how the fields are obtained.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "delta.h"
#include "pvrepl_assert.h"
#include "replace.h"
#include "status.h"

#define STATUS_MAGIC   0x5453525650ull /* "PVRST" */
#define STATUS_VERSION 2u

struct status_disk {
	uint64_t magic;
	uint32_t version;
	uint8_t role;
	uint8_t state;
	uint8_t consistent;
	uint8_t crash_consistent;
	uint64_t epoch;
	uint64_t size_bytes;
	int64_t state_since_unix;
	int64_t last_attempt_unix;
	int64_t last_success_unix;
	int64_t consistent_point_ms;
	uint64_t last_sync_duration_ms;
	uint64_t last_sync_bytes;
	uint64_t out_of_sync_bytes;
	uint64_t rpo_target_ms;
	char volume[64];
	char peer[128];
	char last_error[256];
	uint64_t checksum; /* xxh3 of the bytes before it */
};
_Static_assert(sizeof(struct status_disk) == 552, "status record size");

/*
 * Appended after the record, with its own magic and checksum: a reader that
 * predates it reads the 552 bytes and ignores the rest, and a record without it
 * (from an older writer) still loads, with tracking unknown.
 */
#define STATUS_EXT_MAGIC 0x58545650u /* "PVTX" */
struct status_ext {
	uint32_t magic;
	uint8_t tracking;
	uint8_t last_scan_tracked;
	uint16_t reserved;
	uint64_t tracker_missed_blocks;
	char scan_note[200];
	uint64_t checksum; /* xxh3 of the bytes before it */
};
_Static_assert(sizeof(struct status_ext) == 224, "status extension size");

/* The second extension: who writes the record, and when it last said so. */
#define STATUS_EXT2_MAGIC 0x32545650u /* "PVT2" */
struct status_ext2 {
	uint32_t magic;
	uint32_t writer_pid;
	int64_t heartbeat_unix;
	uint8_t daemon;
	uint8_t reserved[15];
	uint64_t checksum; /* xxh3 of the bytes before it */
};
_Static_assert(sizeof(struct status_ext2) == 40, "status second extension size");

const char *status_state_name(enum status_state st)
{
	static const char *const names[STATUS_STATE_COUNT] = {
		"initial_sync", "replicating", "paused", "disconnected", "split_brain", "error",
	};

	return (unsigned)st < STATUS_STATE_COUNT ? names[st] : "unknown";
}

const char *status_role_name(enum status_role r)
{
	return r == STATUS_ROLE_PRIMARY ? "primary" : "secondary";
}

int status_store_nosync(const struct status_record *s, const char *dir)
{
	struct replace_spec spec = {
		.dir = dir,
		.dirfd = -1,
		.name = STATUS_FILE,
		.tmp_name = STATUS_TMP_FILE,
		.mode = 0644,
		.flags = REPLACE_NOSYNC,
		.step = "status",
	};
	struct {
		struct status_disk d;
		struct status_ext x;
		struct status_ext2 x2;
	} rec;
	struct status_disk d;
	struct status_ext x;
	struct status_ext2 x2;

	ASSERT(s != NULL);
	ASSERT(dir != NULL);

	memset(&x, 0, sizeof(x));
	x.magic = htole32(STATUS_EXT_MAGIC);
	x.tracking = (uint8_t)s->tracking;
	x.last_scan_tracked = s->last_scan_tracked;
	x.tracker_missed_blocks = htole64(s->tracker_missed_blocks);
	snprintf(x.scan_note, sizeof(x.scan_note), "%s", s->scan_note);
	x.checksum = htole64(delta_hash(&x, offsetof(struct status_ext, checksum)));
	memset(&d, 0, sizeof(d));
	d.magic = htole64(STATUS_MAGIC);
	d.version = htole32(STATUS_VERSION);
	d.role = (uint8_t)s->role;
	d.state = (uint8_t)s->state;
	d.consistent = s->consistent;
	d.crash_consistent = status_capture_byte(s->crash_consistent, s->capture);
	d.epoch = htole64(s->epoch);
	d.size_bytes = htole64(s->size_bytes);
	d.state_since_unix = (int64_t)htole64((uint64_t)s->state_since_unix);
	d.last_attempt_unix = (int64_t)htole64((uint64_t)s->last_attempt_unix);
	d.last_success_unix = (int64_t)htole64((uint64_t)s->last_success_unix);
	d.consistent_point_ms = (int64_t)htole64((uint64_t)s->consistent_point_ms);
	d.last_sync_duration_ms = htole64(s->last_sync_duration_ms);
	d.last_sync_bytes = htole64(s->last_sync_bytes);
	d.out_of_sync_bytes = htole64(s->out_of_sync_bytes);
	{
		/* loaded from disk, it may be anything: clamped, never an overflowing cast */
		double ms = s->rpo_target_seconds * 1e3;

		d.rpo_target_ms = htole64(!(ms > 0) ? 0 : ms >= 0x1p64 ? UINT64_MAX : (uint64_t)ms);
	}
	snprintf(d.volume, sizeof(d.volume), "%s", s->volume);
	snprintf(d.peer, sizeof(d.peer), "%s", s->peer);
	snprintf(d.last_error, sizeof(d.last_error), "%s", s->last_error);
	d.checksum = htole64(delta_hash(&d, offsetof(struct status_disk, checksum)));

	memset(&x2, 0, sizeof(x2));
	x2.magic = htole32(STATUS_EXT2_MAGIC);
	x2.writer_pid = htole32(s->writer_pid);
	x2.heartbeat_unix = (int64_t)htole64((uint64_t)s->heartbeat_unix);
	x2.daemon = s->daemon;
	x2.checksum = htole64(delta_hash(&x2, offsetof(struct status_ext2, checksum)));
	_Static_assert(sizeof(rec) == sizeof(d) + sizeof(x) + sizeof(x2),
		       "no padding between the parts");
	rec.d = d;
	rec.x = x;
	rec.x2 = x2;
	/* Reporting only: rename-atomic for readers, deliberately not fsynced. */
	int rc = replace_file(&spec, &rec, sizeof(rec), NULL, 0);

	/* A full disk is when status matters most, and a new file cannot be
	 * made then: the record is written over the old one in place (its blocks
	 * exist). A reader may catch it half-written: its checksum fails and it
	 * is skipped as damaged, never misread. */
	if (rc == -ENOSPC || rc == -EDQUOT) {
		char path[4200];
		int fd;

		snprintf(path, sizeof(path), "%s/%s", dir, STATUS_FILE);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (pwrite(fd, &rec, sizeof(rec), 0) == (ssize_t)sizeof(rec))
				rc = 0;
			close(fd);
		}
	}
	return rc;
}

void status_update_begin(struct status_update *u, struct status_record *s, const char *dir,
			 enum status_role role, const char *volume)
{
	ASSERT(u != NULL);
	ASSERT(s != NULL);
	ASSERT(dir != NULL);
	ASSERT(volume != NULL);
	u->now_unix = time(NULL);
	u->have_prev = status_load(&u->prev, dir) == 0;
	memset(s, 0, sizeof(*s));
	if (u->have_prev)
		*s = u->prev;
	s->role = role;
	snprintf(s->volume, sizeof(s->volume), "%s", volume);
	s->writer_pid = (uint32_t)getpid();
	s->heartbeat_unix = u->now_unix;
}

int status_update_store_nosync(const struct status_update *u, struct status_record *s,
			       const char *dir)
{
	ASSERT(u != NULL);
	ASSERT(s != NULL);
	if (!u->have_prev || u->prev.state != s->state)
		s->state_since_unix = u->now_unix;
	return status_store_nosync(s, dir);
}

int status_load(struct status_record *s, const char *dir)
{
	struct status_disk d;
	struct status_ext x;
	struct status_ext2 x2;
	char path[4200];
	ssize_t n, nx, nx2;
	int fd;

	memset(s, 0, sizeof(*s));
	snprintf(path, sizeof(path), "%s/%s", dir, STATUS_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pread(fd, &d, sizeof(d), 0);
	nx = pread(fd, &x, sizeof(x), sizeof(d));
	nx2 = pread(fd, &x2, sizeof(x2), sizeof(d) + sizeof(x));
	close(fd);
	if (n != (ssize_t)sizeof(d) || le64toh(d.magic) != STATUS_MAGIC ||
	    le32toh(d.version) != STATUS_VERSION ||
	    le64toh(d.checksum) != delta_hash(&d, offsetof(struct status_disk, checksum)) ||
	    d.role > STATUS_ROLE_SECONDARY || d.state >= STATUS_STATE_COUNT)
		return -EBADMSG;
	s->role = d.role;
	s->state = d.state;
	s->consistent = d.consistent;
	s->capture = status_capture_of_byte(d.crash_consistent);
	s->crash_consistent = s->capture != STATUS_CAPTURE_LIVE;
	s->epoch = le64toh(d.epoch);
	s->size_bytes = le64toh(d.size_bytes);
	s->state_since_unix = (int64_t)le64toh((uint64_t)d.state_since_unix);
	s->last_attempt_unix = (int64_t)le64toh((uint64_t)d.last_attempt_unix);
	s->last_success_unix = (int64_t)le64toh((uint64_t)d.last_success_unix);
	s->consistent_point_ms = (int64_t)le64toh((uint64_t)d.consistent_point_ms);
	s->last_sync_duration_ms = le64toh(d.last_sync_duration_ms);
	s->last_sync_bytes = le64toh(d.last_sync_bytes);
	s->out_of_sync_bytes = le64toh(d.out_of_sync_bytes);
	s->rpo_target_seconds = (double)le64toh(d.rpo_target_ms) / 1e3;
	/* Strings from disk are bounded and terminated before use. */
	d.volume[sizeof(d.volume) - 1] = '\0';
	d.peer[sizeof(d.peer) - 1] = '\0';
	d.last_error[sizeof(d.last_error) - 1] = '\0';
	memcpy(s->volume, d.volume, sizeof(s->volume));
	memcpy(s->peer, d.peer, sizeof(s->peer));
	memcpy(s->last_error, d.last_error, sizeof(s->last_error));
	if (nx == (ssize_t)sizeof(x) && le32toh(x.magic) == STATUS_EXT_MAGIC &&
	    le64toh(x.checksum) == delta_hash(&x, offsetof(struct status_ext, checksum)) &&
	    x.tracking <= STATUS_TRACKING_BPF) {
		s->tracking = x.tracking;
		s->last_scan_tracked = x.last_scan_tracked != 0;
		s->tracker_missed_blocks = le64toh(x.tracker_missed_blocks);
		x.scan_note[sizeof(x.scan_note) - 1] = '\0';
		memcpy(s->scan_note, x.scan_note, sizeof(s->scan_note));
	}
	if (nx2 == (ssize_t)sizeof(x2) && le32toh(x2.magic) == STATUS_EXT2_MAGIC &&
	    le64toh(x2.checksum) == delta_hash(&x2, offsetof(struct status_ext2, checksum))) {
		s->daemon = x2.daemon != 0;
		s->writer_pid = le32toh(x2.writer_pid);
		s->heartbeat_unix = (int64_t)le64toh((uint64_t)x2.heartbeat_unix);
	}
	return 0;
}

bool status_writer_gone(const struct status_record *s, int64_t now_unix)
{
	if (!s->daemon || !s->writer_pid)
		return false;
	if (s->heartbeat_unix < now_unix - STATUS_STALE_S) /* no overflow: now is sane */
		return true;
	/* EPERM: alive, someone else's. A reused pid passes, until the heartbeat
	 * goes stale. */
	return kill((pid_t)s->writer_pid, 0) != 0 && errno == ESRCH;
}

int status_heartbeat_nosync(const char *dir)
{
	struct status_record s;
	int rc = status_load(&s, dir);

	if (rc)
		return rc;
	s.writer_pid = (uint32_t)getpid();
	s.heartbeat_unix = (int64_t)time(NULL);
	return status_store_nosync(&s, dir);
}

const char *status_capture_name(uint8_t capture)
{
	switch (capture) {
	case STATUS_CAPTURE_LIVE:
		return "none";
	case STATUS_CAPTURE_FREEZE:
		return "freeze";
	case STATUS_CAPTURE_REFLINK:
		return "reflink";
	case STATUS_CAPTURE_SNAPSHOT:
		return "snapshot";
	}
	return "captured";
}

uint8_t status_capture_byte(bool crash_consistent, uint8_t kind)
{
	if (!crash_consistent)
		return STATUS_CAPTURE_LIVE;
	return kind ? kind : STATUS_CAPTURE_UNKNOWN;
}

uint8_t status_capture_of_byte(uint8_t b)
{
	return b > STATUS_CAPTURE_SNAPSHOT ? STATUS_CAPTURE_UNKNOWN : b;
}
